"""The `splat` command line: train, eval, export, demo.

Errors a user can cause (bad paths, bad arguments, bad data: splat.errors.SplatError) print one
line and exit with code 2; anything else is a bug and keeps its traceback (exit code 1).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from splat import __version__, runner
from splat.errors import InputError as UserError  # a bad flag: reported as one line, no traceback

DATASET_FORMATS = ["blender", "nerfstudio", "colmap", "llff", "multiview"]
NUM_FRAMES = 300  # splat.datasets.capture.DEFAULT_NUM_FRAMES (not imported here: `splat --help` stays fast)
NUM_FRAMES_HELP = f"videos: how many frames to keep, the sharpest of each stretch (default {NUM_FRAMES})"
BUG_REPORT = "this is a bug in splat, not a problem with your input: please report it with the traceback above"


# ----------------------------------------------------------------------------------------------
# train / eval / export
# ----------------------------------------------------------------------------------------------


def _dest(f) -> str:
    """The argparse attribute of a config field's flag."""
    from splat.train.config import flag_name

    return flag_name(f)[2:].replace("-", "_")


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field declared with `flag(...)` in train/config.py: its type from
    the annotation, its help, choices and default from the field, the presets' values from PRESETS.
    Unset flags stay None, so a preset (or a resumed run) keeps its own values."""
    import typing

    from splat.train.config import TrainConfig, cli_fields, default_text, flag_name

    types = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group("training configuration (TrainConfig fields, train/config.py)")
    for f in cli_fields():
        m = f.metadata
        kwargs = {"help": f"{m['help']} (default: {default_text(f)})", "default": m["cli_default"]}
        if types[f.name] is bool:
            kwargs.update(action="store_const", const=True)
        elif types[f.name] in (int, float):
            kwargs["type"] = types[f.name]
        if m["choices"]:
            kwargs["choices"] = list(m["choices"])
        group.add_argument(flag_name(f), **kwargs)


def _config_overrides(args) -> dict:
    """The TrainConfig values the command line sets (device: resolved here, left alone on --resume)."""
    from splat.train.config import cli_fields

    over = {}
    for f in cli_fields():
        value, parse = getattr(args, _dest(f)), f.metadata["parse"]
        if f.name in ("preset", "device") or value is None or (parse and not value):
            continue  # the preset is the base, not an override; the device follows
        over[f.name] = parse(value) if parse else value
    if args.device is not None and not (args.resume and args.device == "auto"):
        over["device"] = runner.device(args.device)
    return over


def _cmd_train(args) -> int:
    from splat import distributed

    return distributed.run(args, _train, "train")  # here, as --nproc local ranks, or as a torchrun rank


def _train(args) -> int:
    from splat.train.config import preset_config, read_config_file

    over = _config_overrides(args)
    if args.config:  # the file's settings, under the flags given
        settings = read_config_file(args.config)
        if args.preset == "auto" and "preset" in settings:
            args.preset = settings["preset"]
        if args.device == "auto" and "device" in settings and not args.resume:
            over["device"] = runner.device(settings["device"])
        over = {**{k: v for k, v in settings.items() if k not in ("preset", "device")}, **over}
    if args.resume:
        trainer, run_dir = runner.resume_run(Path(args.resume), over, args.data, args.eval_every)
    else:
        if args.data is None:
            raise UserError("DATA is required (or --resume RUN)")
        cfg = preset_config(args.preset, **over)
        cfg.eval_steps = runner.eval_steps(args.eval_every, cfg.steps, cfg.eval_steps)
        trainer, run_dir = runner.new_run(args.data, args.out, cfg, args.format, args.num_frames)
    runner.write_plan(trainer, run_dir)
    result = runner.train(trainer, run_dir, args.viewer_port if args.viewer else None)
    if result is None:
        return 130
    runner.print_eval(result)
    print(f"done: {run_dir} (report: {run_dir / 'report.html'})")
    return 0


def _cmd_process(args) -> int:
    from splat.datasets.capture import default_output, find_capture, plan_text, process_capture

    capture = find_capture(args.input)
    out = Path(args.out) if args.out else default_output(args.input)
    print(f"plan: {plan_text(capture, args.num_frames)} -> {out}", flush=True)
    result = process_capture(args.input, out, num_frames=args.num_frames, capture=capture)
    took = sum(result.seconds.values())
    print(f"{result.summary()}\n{result.matcher} matching; {took:.0f} s -> {out}\nnext: splat train {out}")
    return 0


def _cmd_eval(args) -> int:
    from splat.report import write_report
    from splat.train.runs import restore_trainer

    over = {"device": runner.device(args.device)} if args.device else {}
    trainer = restore_trainer(Path(args.run), over)
    runner.print_eval(trainer.evaluate(full=True, save_renders=not args.no_renders))
    print(f"report: {write_report(Path(args.run))}")
    return 0


def _cmd_export(args) -> int:
    from splat.formats.export import export_scene

    out, n = export_scene(Path(args.run), args.out, args.format, args.time)
    print(f"wrote {n:,} Gaussians to {out}")
    return 0


# ----------------------------------------------------------------------------------------------
# render / view
# ----------------------------------------------------------------------------------------------


def _cmd_render(args) -> int:
    from splat import distributed

    return distributed.run(args, _render, "render")  # --nproc N: the frames are dealt to N ranks


def _render(args) -> int:
    from splat import distributed
    from splat.render_dataset import as_tensor_background, build_trajectory, parse_times, render_to_folder
    from splat.run_folder import run_background
    from splat.scene import load

    if args.frames < 1:
        raise UserError("--frames must be positive")
    scene = load(args.scene, device=runner.device(args.device))
    cameras = build_trajectory(scene, args.trajectory, args.frames, args.width, args.height)
    times = None
    if args.times:
        if not scene.is_dynamic:
            raise UserError(f"--times: {args.scene} is a static scene (3D Gaussians)")
        times = parse_times(args.times)
        cameras = [cameras[k * len(cameras) // len(times)] for k in range(len(times))]
    out = Path(args.out)
    t_start = time.perf_counter()
    last = [0.0]

    def progress(done, total):
        if time.perf_counter() - last[0] > 5 or done == total:
            last[0] = time.perf_counter()
            print(f"rendered {done}/{total} frames", flush=True)

    transforms = render_to_folder(
        scene,
        cameras,
        out,
        depth=args.depth,
        alpha=args.alpha,
        video=args.video,
        background=as_tensor_background(args.background or run_background(Path(args.scene))),
        times=times,
        progress=progress,
        shard=distributed.world(),
        wait_for_shards=distributed.barrier,
    )
    dt = time.perf_counter() - t_start
    print(
        f"{len(cameras)} frames at {cameras[0].width}x{cameras[0].height} in {dt:.1f} s -> {out} "
        f"({transforms.name}{', video.mp4' if args.video else ''})"
    )
    return 0


def _cmd_view(args) -> int:
    from splat.viewer.security import is_loopback, resolve

    resolve(args.host, args.port)  # a bad --host / --port fails before the scene loads

    from splat.scene import load
    from splat.viewer.app import Viewer

    scene = load(args.scene, device=runner.device(args.device))
    viewer = Viewer(
        scene,
        host=args.host,
        port=args.port,
        title=Path(args.scene).name,
        max_splats=args.max_splats,
        renderer=args.renderer,
        token=args.token,
        share=args.share,
    )
    if args.token is None and not is_loopback(args.host):
        print(
            f"warning: --host {args.host} serves the scene to anyone who can reach it; add --token SECRET",
            file=sys.stderr,
        )
    print(f"splat viewer: {scene.summary} from {args.scene} at {viewer.url} (Ctrl-C to stop)", flush=True)
    viewer.wait()
    return 0


# ----------------------------------------------------------------------------------------------
# demo
# ----------------------------------------------------------------------------------------------


def _cmd_fit_image(args) -> int:
    from splat.fields.image_fit import fit_image, load_image, reconstruct, save_fit

    if args.steps < 1 or args.batch < 1:
        raise UserError("--steps and --batch must be positive")
    image = load_image(args.image)
    H, W = image.shape[:2]
    print(f"{args.image}: {W}x{H}, fitting a 16-level 2D hash grid + 64-wide MLP for {args.steps} steps")

    def progress(h):
        print(f"step {h['step']:6d}  {h['seconds']:7.1f} s  PSNR {h['psnr']:.2f} dB", flush=True)

    net, history = fit_image(
        image,
        args.steps,
        args.batch,
        log2_hashmap_size=args.log2_hashmap_size,
        progress=progress,
        device=runner.device(args.device),
    )
    out = save_fit(reconstruct(net, W, H).cpu(), history, args.image, args.out)
    print(f"PSNR {history[-1]['psnr']:.2f} dB after {history[-1]['seconds']:.1f} s -> {out}")
    return 0


def _cmd_demo(args) -> int:
    from splat.demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="splat",
        description="Neural rendering engine: differentiable Gaussian splatting in NVIDIA Warp (CPU and CUDA).",
    )
    parser.add_argument("--version", action="version", version=f"splat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    from splat.train.config import TrainConfig

    eval_steps = TrainConfig().eval_steps
    t = sub.add_parser("train", help="train 3D or 4D Gaussians, or a neural field, on a folder of posed images")
    t.add_argument(
        "data",
        nargs="?",
        help="dataset folder (Blender, nerfstudio, COLMAP or LLFF; auto-detected), or photos or a video to pose "
        "first (as splat process does; the poses are kept in outputs/<name>/data)",
    )
    t.add_argument("--out", help="run folder (default: outputs/<scene>/<date-time>)")
    t.add_argument("--resume", metavar="RUN", help="continue the run in this folder from its newest checkpoint")
    # splat.datasets.FORMATS (tests/test_cli_config.py checks they agree); importing it here would
    # load torch before distributed.run quiets c10d's logging, and slow `splat --help` tenfold
    t.add_argument("--format", choices=DATASET_FORMATS, help="override format detection")
    t.add_argument(
        "--eval-every",
        type=int,
        help=f"evaluate on the test split every N steps (default: {', '.join(f'{s:,}' for s in eval_steps[:-1])} "
        "and the end)",
    )
    t.add_argument(
        "--nproc",
        type=int,
        help="train on N local processes, each owning 1/N of the Gaussians "
        "(torch.distributed; or launch with torchrun for several machines)",
    )
    t.add_argument("--num-frames", type=int, default=NUM_FRAMES, help=NUM_FRAMES_HELP)
    t.add_argument(
        "--config",
        metavar="FILE",
        help="a JSON object of training settings (TrainConfig fields, train/config.py), those without a flag "
        'included, e.g. {"motion_knots": 12}; flags given on the command line win',
    )
    t.add_argument("--viewer", action="store_true", help="show training live in the web viewer")
    t.add_argument("--viewer-port", type=int, default=8080)
    _add_config_flags(t)
    t.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "process",
        help="pose photos or a video (structure from motion) into a COLMAP dataset for splat train",
    )
    p.add_argument("input", help="a folder of photos, a video file, or a folder of videos")
    p.add_argument("--out", help="dataset folder to write (default: outputs/<name>/data, where splat train looks)")
    p.add_argument("--num-frames", type=int, default=NUM_FRAMES, help=NUM_FRAMES_HELP)
    p.set_defaults(func=_cmd_process)

    e = sub.add_parser("eval", help="re-compute test metrics of a run")
    e.add_argument("run", help="run folder")
    e.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: the device the run trained on")
    e.add_argument("--no-renders", action="store_true", help="do not write test renders")
    e.set_defaults(func=_cmd_eval)

    r = sub.add_parser(
        "render", help="render a scene along a camera path: images, depth, masks, transforms.json, video"
    )
    r.add_argument("scene", help="run folder, checkpoint (.pt) or splat file (PLY, SPZ, .splat)")
    r.add_argument(
        "--trajectory", default="orbit", help="orbit, spiral, train (through the training cameras) or PATH.json"
    )
    r.add_argument("--frames", type=int, default=120)
    r.add_argument("--width", type=int)
    r.add_argument("--height", type=int)
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--depth", action="store_true", help="also write depth (16-bit PNG in mm and float .npy)")
    r.add_argument("--alpha", action="store_true", help="also write alpha masks")
    r.add_argument("--video", action="store_true", help="also write video.mp4")
    r.add_argument(
        "--background", help="white, black or R,G,B in [0, 1] (default: a run's training background, else white)"
    )
    r.add_argument("--times", help="dynamic scenes: START:END:COUNT, e.g. 0:1:120")
    r.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    r.add_argument("--nproc", type=int, help="render the frames on N local processes (or launch with torchrun)")
    r.set_defaults(func=_cmd_render)

    from splat.viewer import DEFAULT_MAX_SPLATS

    v = sub.add_parser("view", help="open a scene or run in the web viewer")
    v.add_argument("scene", help="run folder, checkpoint (.pt) or splat file (PLY, SPZ, .splat)")
    v.add_argument("--port", type=int, default=8080)
    v.add_argument("--host", default="127.0.0.1", help="bind address (default: localhost only)")
    v.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    v.add_argument(
        "--max-splats",
        type=int,
        default=DEFAULT_MAX_SPLATS,
        help=f"most Gaussians the browser draws (default {DEFAULT_MAX_SPLATS:,}: the ones contributing most)",
    )
    v.add_argument(
        "--renderer",
        choices=["auto", "browser", "server"],
        default="auto",
        help="browser: your GPU draws the Gaussians; server: exact frames rendered here (default auto: "
        "browser when the scene fits --max-splats)",
    )
    v.add_argument(
        "--token",
        help="require this secret from every browser (it is printed in the URL); use it with a non-loopback --host",
    )
    v.add_argument(
        "--share",
        action="store_true",
        help="also publish the viewer at a public URL through viser's relay (share.viser.studio); every browser "
        "then needs the token, made when --token is not given (default: no connection leaves this machine)",
    )
    v.set_defaults(func=_cmd_view)

    x = sub.add_parser("export", help="export a run's Gaussians (PLY, .splat, SPZ, compressed PLY)")
    x.add_argument("run", help="run folder, checkpoint (.pt) or splat file")
    x.add_argument(
        "--format",
        choices=["ply", "splat", "spz", "compressed-ply"],
        help="ply (INRIA 3DGS, the default), splat (antimatter15), spz (Niantic), compressed-ply "
        "(SuperSplat); default: from --out's name, else ply",
    )
    x.add_argument("--out", help="output file (default: RUN/point_cloud.<ext>)")
    x.add_argument("--time", type=float, help="dynamic scenes: export the 3D scene at this time in [0, 1]")
    x.set_defaults(func=_cmd_export)

    fi = sub.add_parser("fit-image", help="fit a 2D hash grid + MLP to an image (the hash-encoding demo)")
    fi.add_argument("image", help="PNG / JPEG image")
    fi.add_argument("--out", help="reconstruction image (default: IMAGE_STEM.fit.png next to the input)")
    fi.add_argument("--steps", type=int, default=2000)
    fi.add_argument("--batch", type=int, default=1 << 16, help="pixels per step (default 65536)")
    fi.add_argument("--log2-hashmap-size", type=int, default=19)
    fi.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    fi.set_defaults(func=_cmd_fit_image)

    demo = sub.add_parser("demo", help="train on the built-in procedural scene and render it (no downloads)")
    demo.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    demo.add_argument("--steps", type=int, help="training steps (default 1500; 500 with --field)")
    demo.add_argument("--views", type=int, default=48, help="photographs of the scene (default 48, 1 in 8 held out)")
    demo.add_argument("--width", type=int, default=160)
    demo.add_argument("--height", type=int, default=120)
    demo.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    demo.add_argument(
        "--dynamic",
        action="store_true",
        help="the moving scene instead: film it with several cameras over time and train 4D Gaussians",
    )
    demo.add_argument("--field", action="store_true", help="train a hash-grid neural field (Instant-NGP) instead")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `--nproc` relaunches the same command
    if args.command is None:
        parser.print_help()
        return 0
    from splat.allocator import keep_freed_memory

    keep_freed_memory()  # before the first large tensor: training, rendering and viewing all gain
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"splat {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - user-facing errors are one line; bugs keep their traceback
        from splat.errors import is_user_error

        if is_user_error(e):
            print(f"splat {args.command}: error: {_one_line(e)}", file=sys.stderr)
            return 2
        import traceback

        traceback.print_exc()
        print(f"splat {args.command}: internal error ({e.__class__.__name__}); {BUG_REPORT}", file=sys.stderr)
        return 1


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


if __name__ == "__main__":
    sys.exit(main())
