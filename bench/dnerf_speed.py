#!/usr/bin/env python
"""Speed of a trained D-NeRF scene: the dynamic training step (4D Gaussians, or moving 3D
Gaussians) against a 3D step on the same images, and render frames per second at 400x400.

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
import json
import statistics
import sys
import time
from pathlib import Path

from common import frame_times, header, results_dir, write_result

HERE = Path(__file__).resolve().parent


def step_seconds(
    params: dict, view, K, width: int, height: int, gt, time_value, repeats: int, velocity=0.0, bases=None
) -> float:
    """Median seconds of forward + backward of the training loss for these Gaussians (for 4D ones
    with the velocity term at weight `velocity`, as the trainer adds it; with `bases`, 3D
    Gaussians moved to `time_value` by those shared motions first, splat/motion.py)."""
    import torch

    from splat.gaussians import rasterize_gaussians
    from splat.motion import deform
    from splat.train import dynamic, losses

    leaves = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    motions = {k: v.detach().clone().requires_grad_(k != "pivots") for k, v in (bases or {}).items()}
    generator = torch.Generator().manual_seed(0)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        drawn, times = (deform(leaves, motions, time_value), None) if bases else (leaves, time_value)
        image, _, info = rasterize_gaussians(
            drawn, view[None], K[None], width, height, sh_degree=3, backgrounds=torch.zeros(1, 3), times=times
        )
        loss = losses.photometric_loss(image[0], gt, None, 0.2)
        if time_value is not None and velocity > 0:
            alive, velocities = dynamic.alive_velocities([info])
            term = dynamic.velocity_consistency(leaves["means"].detach()[alive], velocities, generator)
            loss = loss + velocity * term
        loss.backward()
        out.append(time.perf_counter() - t0)
        for v in [*leaves.values(), *motions.values()]:
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
    from splat.motion import deform
    from splat.renderer.rasterization_4d import slice_gaussians
    from splat.run_folder import read_newest_checkpoint, run_dataset

    info = read_json_object(run / "config.json", ValueError)
    data = run_dataset(info)
    _, state = read_newest_checkpoint(run, "benchmark")
    params, bases = state["params"], state.get("bases")
    background = info["config"].get("background", "auto")
    rows = []
    for i in data.train_indices:
        cam = data.camera(i)
        gt, _ = data.image(i, torch.zeros(3) if background != "white" else torch.ones(3))
        view, K = data.viewmat(i), data.K(i)
        if bases is not None:  # moving 3D Gaussians: all of them drawn, moved to the frame's time
            sliced = {k: v.detach() for k, v in deform(params, bases, float(cam.time)).items()}
            velocity = 0.0
        else:
            sliced = slice_gaussians(params, float(cam.time))
            velocity = float(info["config"].get("velocity_consistency", 0.0))
        s4 = step_seconds(params, view, K, cam.width, cam.height, gt, float(cam.time), args.repeats, velocity, bases)
        s3 = step_seconds(sliced, view, K, cam.width, cam.height, gt, None, args.repeats)
        rows.append({"time": cam.time, "live": int(sliced["means"].shape[0]), "step_dynamic": s4, "step_3d": s3})
    ratio = statistics.median(r["step_dynamic"] / r["step_3d"] for r in rows)
    model = "motion" if bases is not None else "4d"

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
        "model": model,
        "run": str(run),
        "num_gaussians": int(params["means"].shape[0]),
        "image": f"{data.camera(data.train_indices[0]).width}x{data.camera(data.train_indices[0]).height}",
        "step": {
            "median_ratio_to_3d": ratio,
            "median_step_dynamic_s": statistics.median(r["step_dynamic"] for r in rows),
            "median_step_3d_s": statistics.median(r["step_3d"] for r in rows),
            "median_live_gaussians": statistics.median(r["live"] for r in rows),
            "frames": rows,
        },
        "render_400": {"fps": fps, "median_frame_s": statistics.median(seconds), "frames": args.frames},
        "notes": "step = forward + backward of the training loss on one training frame; 3D = the Gaussians the "
        "dynamic ones are at that frame's time (4D: the live ones they slice into; motion: all of them, moved), as "
        "leaf parameters",
    }
    path = results_dir() / "dnerf_speed-cpu.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    models = previous.get("models", {"4d": previous} if previous else {})  # one entry per model, latest each
    out = write_result(path, {**header("dnerf_speed", "cpu"), "models": {**models, model: result}})
    print(
        f"{result['num_gaussians']:,} Gaussians ({model}), {result['step']['median_live_gaussians']:,.0f} drawn a "
        f"frame: dynamic step {1000 * result['step']['median_step_dynamic_s']:.1f} ms, 3D step "
        f"{1000 * result['step']['median_step_3d_s']:.1f} ms (ratio {ratio:.2f}); "
        f"render 400x400 {fps:.1f} FPS -> {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
