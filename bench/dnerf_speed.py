#!/usr/bin/env python
"""Speed of a trained D-NeRF scene: the 4D training step against a 3D step on the same images,
and render frames per second at 400x400.

    python bench/train_dnerf.py --variants defaults --seconds 300   # trains outputs/bench/train_dnerf/defaults
    python bench/dnerf_speed.py                                     # then this, on that run

Step: forward + backward of the training loss (velocity term included) on one training frame (no
optimiser step), for every training frame in turn, (a) with the run's 4D Gaussians at the frame's
time (slicing and culling by time included) and (b) with the 3D Gaussians those slice into at
that time (`slice_gaussians`: the live ones only, as leaf parameters), so that both steps draw
the same Gaussians into the same image. Render: `scene.render` of the 4D scene at 400x400 along an orbit at
times spread over [0, 1]. Writes bench/results/dnerf_speed-<device>.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from common import frame_times, header, results_dir, write_result

HERE = Path(__file__).resolve().parent


def step_seconds(params: dict, view, K, width: int, height: int, gt, time_value, repeats: int, velocity=0.0) -> float:
    """Median seconds of forward + backward of the training loss for these Gaussians (for 4D ones
    with the velocity term at weight `velocity`, as the trainer adds it)."""
    import torch

    from splat.gaussians import rasterize_gaussians
    from splat.train import dynamic, losses

    leaves = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    generator = torch.Generator().manual_seed(0)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        image, _, info = rasterize_gaussians(
            leaves, view[None], K[None], width, height, sh_degree=3, backgrounds=torch.zeros(1, 3), times=time_value
        )
        loss = losses.photometric_loss(image[0], gt, None, 0.2)
        if time_value is not None and velocity > 0:
            alive = info["gaussian_ids"]
            loss = loss + velocity * dynamic.velocity_consistency(leaves["means"], info["velocities"], alive, generator)
        loss.backward()
        out.append(time.perf_counter() - t0)
        for v in leaves.values():
            v.grad = None
    return statistics.median(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default=str(HERE.parent / "outputs" / "bench" / "train_dnerf" / "defaults"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--frames", type=int, default=30, help="render frames at 400x400")
    args = p.parse_args(argv)
    run = Path(args.run)
    if not (run / "config.json").is_file():
        print(f"{run}: no trained run (train one with bench/train_dnerf.py first)", file=sys.stderr)
        return 1
    import torch

    import splat
    from splat.io_utils import read_json_object
    from splat.renderer.slicing import slice_gaussians
    from splat.run_folder import read_newest_checkpoint, run_dataset

    info = read_json_object(run / "config.json", ValueError)
    data = run_dataset(info)
    _, state = read_newest_checkpoint(run, "benchmark")
    params = state["params"]
    background = info["config"].get("background", "auto")
    rows = []
    for i in data.train_indices:
        cam = data.camera(i)
        gt, _ = data.image(i, torch.zeros(3) if background != "white" else torch.ones(3))
        view, K = data.viewmat(i), data.K(i)
        sliced = slice_gaussians(params, float(cam.time))
        velocity = float(info["config"].get("velocity_consistency", 0.0))
        s4 = step_seconds(params, view, K, cam.width, cam.height, gt, float(cam.time), args.repeats, velocity)
        s3 = step_seconds(sliced, view, K, cam.width, cam.height, gt, None, args.repeats)
        rows.append({"time": cam.time, "live": int(sliced["means"].shape[0]), "step_4d": s4, "step_3d": s3})
    ratio = statistics.median(r["step_4d"] / r["step_3d"] for r in rows)

    scene = splat.load(run)
    path = splat.trajectories.orbit_around(scene.cameras, args.frames)
    cams = [c.resized(400, 400) for c in path]
    seconds = frame_times(
        lambda k: scene.render(cams[k % len(cams)], time=(k % args.frames) / max(args.frames - 1, 1)),
        args.frames,
        "cpu",
    )
    fps = 1.0 / statistics.median(seconds)
    result = {
        **header("dnerf_speed", "cpu"),
        "run": str(run),
        "num_gaussians": int(params["means"].shape[0]),
        "image": f"{data.camera(data.train_indices[0]).width}x{data.camera(data.train_indices[0]).height}",
        "step": {
            "median_ratio_4d_to_3d": ratio,
            "median_step_4d_s": statistics.median(r["step_4d"] for r in rows),
            "median_step_3d_s": statistics.median(r["step_3d"] for r in rows),
            "median_live_gaussians": statistics.median(r["live"] for r in rows),
            "frames": rows,
        },
        "render_400": {"fps": fps, "median_frame_s": statistics.median(seconds), "frames": args.frames},
        "notes": "step = forward + backward of the training loss on one training frame; 3D = the Gaussians the 4D "
        "ones slice into at that frame's time (the live ones), as leaf parameters",
    }
    out = write_result(results_dir() / "dnerf_speed-cpu.json", result)
    print(
        f"{result['num_gaussians']:,} 4D Gaussians, {result['step']['median_live_gaussians']:,.0f} live a frame: "
        f"4D step {1000 * result['step']['median_step_4d_s']:.1f} ms, 3D step "
        f"{1000 * result['step']['median_step_3d_s']:.1f} ms (ratio {ratio:.2f}); "
        f"render 400x400 {fps:.1f} FPS -> {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
