"""The `splat` command line. Subcommands arrive with their features; today: `demo`.

Errors a user can cause (bad paths, bad arguments, bad data) print one line and exit non-zero.
"""

from __future__ import annotations

import argparse
import sys
import time

from splat import __version__


class UserError(Exception):
    """A problem with the user's input: reported as one line, no traceback."""


def _cmd_demo(args) -> None:
    import torch

    import splat
    from splat.io_utils import write_image
    from splat.scenes import still_life, still_life_cameras

    if args.frames < 1 or args.width < 1 or args.height < 1:
        raise UserError("--frames, --width and --height must be positive")
    scene = still_life()
    views, Ks = still_life_cameras(args.frames, args.width, args.height)
    background = torch.ones(1, 3)
    print(f"splat demo: procedural still life, {scene['means'].shape[0]:,} Gaussians, "
          f"{args.frames} views at {args.width}x{args.height} -> {args.out}/")  # fmt: skip
    times = []
    for k in range(args.frames):
        t0 = time.perf_counter()
        image, _, _ = splat.rasterize(
            **scene, viewmats=views[k : k + 1], Ks=Ks[k : k + 1], width=args.width, height=args.height,
            backgrounds=background,
        )  # fmt: skip
        times.append(time.perf_counter() - t0)
        write_image(f"{args.out}/frame_{k:04d}.png", image[0])
    steady = times[1:] or times
    print(f"rendered {args.frames} frames; first {times[0] * 1000:.0f} ms (includes kernel compile/load), "
          f"then {1000 * sum(steady) / len(steady):.1f} ms per frame")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="splat",
        description="Neural rendering engine: differentiable Gaussian splatting in NVIDIA Warp (CPU and CUDA).",
    )
    parser.add_argument("--version", action="version", version=f"splat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="render the built-in procedural scene to PNG images")
    demo.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    demo.add_argument("--frames", type=int, default=8, help="number of orbit views (default: 8)")
    demo.add_argument("--width", type=int, default=640)
    demo.add_argument("--height", type=int, default=480)
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        args.func(args)
    except (UserError, ValueError, OSError) as e:
        print(f"splat {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"splat {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
