#!/usr/bin/env python
"""4D quality benchmark: one 4D model vs per-frame 3DGS with the same total steps.

The procedural dynamic scene (`splat.scenes.dynamic_scene_at`) is filmed by `--cameras` fixed
cameras at `--times` instants (multi-view video layout; cam00 held out). Then:

- 4D: one model trained on all training frames for `--steps` steps;
- per-frame 3DGS: one static model per instant, trained on that instant's training views for
  `--steps / --times` steps each (the same total).

Both are scored on (a) the held-out view: cam00 at every filmed instant, and (b) held-out times:
every camera at the instants half-way between filmed ones, ground truth rendered from the
procedural scene (the per-frame baseline shows its nearest frame there). White background.
Writes bench/results/train_4d-<device>.json.

    python bench/train_4d.py                       # 10 cameras x 10 instants at 128x96, 4000 steps
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from common import header, write_result

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cameras", type=int, default=10)
    p.add_argument("--times", type=int, default=10)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    p.add_argument("--out", default="outputs/bench/train_4d")
    p.add_argument(
        "--skip-per-frame",
        action="store_true",
        help="train the 4D model only; keep the per-frame 3DGS result of the previous file (its date noted)",
    )
    args = p.parse_args(argv)

    import numpy as np
    import torch

    import splat
    from splat.scenes import dome_cameras, dynamic_scene_at, write_blender_dataset, write_multiview_video_dataset
    from splat.scenes.dataset import render_rgba
    from splat.train.config import TrainConfig
    from splat.train.losses import psnr
    from splat.train.runs import new_trainer

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    C, T, W, H = args.cameras, args.times, args.width, args.height
    write_multiview_video_dataset(out / "data4d", n_cameras=C, n_times=T, width=W, height=H)
    views, K = dome_cameras(C, W, H)
    cams = [splat.Camera(W, H, K[0, 0], K[1, 1], K[0, 2], K[1, 2], v) for v in views]
    filmed = [i / (T - 1) for i in range(T)]
    between = [(i + 0.5) / (T - 1) for i in range(T - 1)]

    def ground_truth(t: float) -> torch.Tensor:  # (C, H, W, 3) on white
        rgba = torch.from_numpy(render_rgba(dynamic_scene_at(t), views, K, W, H)).float() / 255
        return rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])

    base = dict(
        device=device,
        background="white",
        init_points=20_000,
        save_renders=False,
        checkpoint_every=10**9,
        eval_steps=[],
        log_every=10**9,
        sh_degree=1,
        sh_degree_interval=500,
    )

    def score(render_at) -> dict:
        held_view = [psnr(render_at(cams[0], t), ground_truth(t)[0]) for t in filmed]
        held_time = [psnr(render_at(cams[c], t), gt[c]) for t in between for gt in [ground_truth(t)] for c in range(C)]
        return {"heldout_view_psnr": float(np.mean(held_view)), "heldout_time_psnr": float(np.mean(held_time))}

    # 4D
    t0 = time.perf_counter()
    cfg = TrainConfig(steps=args.steps, refine_stop=int(args.steps * 0.6), reset_every=10**9, **base)
    trainer = new_trainer(str(out / "data4d"), out / "run4d", cfg)
    trainer.train()
    seconds_4d = time.perf_counter() - t0
    scene4d = splat.load(out / "run4d", with_cameras=False)
    result_4d = {
        **score(lambda cam, t: scene4d.render(cam, background=(1, 1, 1), time=t)["rgb"]),
        "train_seconds": seconds_4d,
        "num_gaussians": scene4d.num_gaussians,
    }
    print(f"4D: {result_4d}", flush=True)

    results_path = HERE / "results" / f"train_4d-{device}.json"
    if args.skip_per_frame:
        import json

        previous = json.loads(results_path.read_text())
        result_3d = {**previous["per_frame_3dgs"], "measured": previous.get("per_frame_3dgs_date", previous["date"])}
        print(f"per-frame 3DGS (from {result_3d['measured']}): {result_3d}", flush=True)
        return finish(args, device, result_4d, result_3d, seconds_4d, results_path)

    # per-frame 3DGS, same total steps
    t0 = time.perf_counter()
    per_frame, total = [], 0
    order = list(range(1, C)) + [0]  # write_blender_dataset holds out the last views: cam00
    steps_each = max(1, args.steps // T)
    for i, t in enumerate(filmed):
        root = out / f"frame{i:02d}"
        write_blender_dataset(dynamic_scene_at(t), root / "data", views[order], K, W, H, n_test=1)
        cfg = TrainConfig(
            steps=steps_each,
            refine_start=min(500, steps_each // 4),
            refine_stop=int(steps_each * 0.6),
            refine_every=max(10, steps_each // 30),
            reset_every=10**9,
            **base,
        )
        tr = new_trainer(str(root / "data"), root / "run", cfg)
        tr.train()
        per_frame.append(splat.load(root / "run", with_cameras=False))
        total += per_frame[-1].num_gaussians
    seconds_3d = time.perf_counter() - t0

    def nearest(t: float):
        return per_frame[min(range(T), key=lambda i: abs(filmed[i] - t))]

    result_3d = {
        **score(lambda cam, t: nearest(t).render(cam, background=(1, 1, 1))["rgb"]),
        "train_seconds": seconds_3d,
        "num_gaussians_total": total,
        "steps_per_frame": steps_each,
    }
    print(f"per-frame 3DGS: {result_3d}", flush=True)
    result_3d["measured"] = header("train_4d", device)["date"]
    return finish(args, device, result_4d, result_3d, seconds_4d, results_path)


def finish(args, device: str, result_4d: dict, result_3d: dict, seconds_4d: float, results_path: Path) -> int:
    seconds_3d, total = result_3d["train_seconds"], result_3d["num_gaussians_total"]
    C, T, W, H = args.cameras, args.times, args.width, args.height
    earlier = []
    if results_path.exists():  # the 4D results before this run, to compare a change of defaults with
        import json

        previous = json.loads(results_path.read_text())
        earlier = [{"date": previous["date"], "4d": previous["4d"]}, *previous.get("earlier_4d", [])]
    print(f"\n{'method':18s} {'held-out view':>14s} {'held-out time':>14s} {'train s':>8s} {'Gaussians':>10s}")
    print(
        f"{'4D (one model)':18s} {result_4d['heldout_view_psnr']:14.2f} {result_4d['heldout_time_psnr']:14.2f} "
        f"{seconds_4d:8.0f} {result_4d['num_gaussians']:10,d}"
    )
    print(
        f"{'per-frame 3DGS':18s} {result_3d['heldout_view_psnr']:14.2f} {result_3d['heldout_time_psnr']:14.2f} "
        f"{seconds_3d:8.0f} {total:10,d}"
    )
    path = write_result(
        results_path,
        {
            **header("train_4d", device),
            "setup": {
                "cameras": C,
                "times": T,
                "width": W,
                "height": H,
                "steps": args.steps,
                "heldout_camera": "cam00",
            },
            "4d": result_4d,
            "per_frame_3dgs": result_3d,
            "earlier_4d": earlier,
            "notes": "PSNR in dB on white; held-out view = cam00 at the filmed instants; held-out time = all cameras "
            "half-way between filmed instants (per-frame baseline: nearest frame's model)",
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
