#!/usr/bin/env python
"""4D render speed: frames per second of `splat.rasterize_4d` at 800x800 for 100k and 1M
Gaussians, against the same pipeline with the slicing done by the pure-torch twins (measured in
the same run), plus the share of the frame spent slicing.

The synthetic scene: Gaussians in a unit ball, times uniform in [0, 1], temporal scales 0.05-0.3,
rotations that mix space and time (so they move); one camera orbiting it at a random time per
frame. Writes bench/results/render_4d-<device>.json.

    python bench/render_4d.py                 # 100k and 1M on this machine's device
    python bench/render_4d.py --sizes 100000 --frames 20
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

from common import frame_times, header, results_dir, write_result

HERE = Path(__file__).resolve().parent


def make_scene(n: int, device, seed: int = 0) -> dict:
    import torch

    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g)
    xyz = d / d.norm(dim=1, keepdim=True) * torch.rand(n, 1, generator=g) ** (1 / 3)
    means = torch.cat([xyz, torch.rand(n, 1, generator=g)], 1)
    scales = torch.cat(
        [torch.exp(-5.0 + 1.5 * torch.rand(n, 3, generator=g)), 0.05 + 0.25 * torch.rand(n, 1, generator=g)], 1
    )

    def quat():
        q = 0.3 * torch.randn(n, 4, generator=g)
        q[:, 0] += 1
        return q

    scene = {
        "means": means,
        "quats_left": quat(),
        "quats_right": quat(),
        "scales": scales,
        "opacities": 0.2 + 0.8 * torch.rand(n, generator=g),
        "colors": torch.rand(n, 3, generator=g),
    }
    return {k: v.to(device).contiguous() for k, v in scene.items()}


def camera(k: int, device, width: int, height: int):
    import torch

    from splat.scenes import look_at

    a = 2 * math.pi * k / 17
    view = look_at((3.0 * math.cos(a), 3.0 * math.sin(a), 1.0), (0.0, 0.0, 0.0), dtype=torch.float32)
    f = 0.5 * width / math.tan(math.radians(25))
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
    return view[None].to(device), K[None].to(device)


def torch_sliced_render(scene, viewmats, Ks, width, height, t):
    """The peer: slicing by the pure-torch twins, then the same culling and rasterizer."""
    import torch

    import splat
    from splat.renderer import torch_impl as ti

    cov3, vel, W = ti.covariance_4d(scene["scales"], scene["quats_left"], scene["quats_right"])
    means3, weights = ti.slice_at_times(torch.tensor([t], device=viewmats.device), scene["means"], vel, W)
    visible = scene["opacities"] * weights[0]
    ids = (visible >= 1 / 255).nonzero().flatten()
    return splat.rasterize(
        means3[0][ids], None, None, visible[ids], scene["colors"][ids], viewmats, Ks, width, height, covars=cov3[ids]
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,1000000")
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--width", type=int, default=800)
    p.add_argument("--height", type=int, default=800)
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    args = p.parse_args(argv)

    import torch

    import splat
    from splat.renderer import covariance_4d, slice_at_times

    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    W, H = args.width, args.height
    rows = []
    with torch.no_grad():
        for n in (int(s) for s in args.sizes.split(",")):
            scene = make_scene(n, dev)
            times = [(0.37 * k) % 1.0 for k in range(args.frames + 1)]
            alive = []

            def ours(k):
                view, K = camera(k, dev, W, H)
                _, _, meta = splat.rasterize_4d(**scene, viewmats=view, Ks=K, width=W, height=H, times=times[k])
                alive.append(meta["gaussian_ids"].numel())

            def peer(k):
                view, K = camera(k, dev, W, H)
                torch_sliced_render(scene, view, K, W, H, times[k])

            def slicing_only(k):
                cov3, vel, tv = covariance_4d(scene["scales"], scene["quats_left"], scene["quats_right"])
                slice_at_times(torch.tensor([times[k]], device=dev), scene["means"], vel, tv)

            t_ours = statistics.median(frame_times(ours, args.frames, dev))
            t_slice = statistics.median(frame_times(slicing_only, args.frames, dev))
            t_peer = statistics.median(frame_times(peer, max(2, args.frames // 2), dev))
            rows.append(
                {
                    "gaussians": n,
                    "resolution": f"{W}x{H}",
                    "frame_ms": 1000 * t_ours,
                    "fps": 1 / t_ours,
                    "slicing_ms": 1000 * t_slice,
                    "alive_fraction": statistics.mean(alive) / n,
                    "torch_slicing_frame_ms": 1000 * t_peer,
                    "speedup_vs_torch_slicing": t_peer / t_ours,
                }
            )
            print(
                f"{n:>9,d} Gaussians: {1000 * t_ours:8.1f} ms ({1 / t_ours:6.1f} FPS), "
                f"slicing {1000 * t_slice:6.1f} ms, "
                f"alive {rows[-1]['alive_fraction']:.0%}; torch-slicing peer {1000 * t_peer:8.1f} ms",
                flush=True,
            )

    print(f"\n4D render at {W}x{H} on {dev.type}")
    print(f"{'Gaussians':>10s} {'ms':>8s} {'FPS':>7s} {'slice ms':>9s} {'alive':>6s} {'peer ms':>8s} {'x':>5s}")
    for r in rows:
        print(
            f"{r['gaussians']:10,d} {r['frame_ms']:8.1f} {r['fps']:7.1f} {r['slicing_ms']:9.1f} "
            f"{r['alive_fraction']:6.0%} {r['torch_slicing_frame_ms']:8.1f} {r['speedup_vs_torch_slicing']:5.2f}"
        )
    path = write_result(
        results_dir() / f"render_4d-{dev.type}.json",
        {
            **header("render_4d", dev.type),
            "results": rows,
            "notes": "median frame time of rasterize_4d (slicing + culling + 3D rasterizer, forward only, RGB); peer: "
            "the same with slicing by the pure-torch twins",
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
