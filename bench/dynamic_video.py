#!/usr/bin/env python
"""Videos of a moving scene, trained as a still scene (the default) and as a moving one
(`--model motion`, `--model 4d`): the same `splat train` command on the same posed video, side by
side.

    python bench/dynamic_video.py                  # both videos, 300 s per run
    python bench/dynamic_video.py --videos walk96 --seconds 600

Each video films the speckled moving scene with one walking camera (`splat.scenes.
film_dynamic_video`: a sphere bounces twice, a cube turns, a torus slides, one object appears and
one fades), at its own size, length and texture seed; `splat process` poses it once (kept under
outputs/bench/dynamic_video/). The runs of a video train at once with one CPU thread each (three
runs on two cores: each gets about two thirds of a core). Scored two ways:
- held-out frames: every 8th frame, at a time and a camera between its neighbours' (the run's own
  test split);
- novel views: 24 cameras off the walk (higher and lower, between its azimuths), each at a time
  when the walking camera was at the other end of its path, against renders of the procedural
  scene (the cameras mapped into the posed frame by the similarity that aligns the posed cameras
  to the filming ones).
Writes bench/results/dynamic_video-<device>.json: per video the pose errors against the cameras
that filmed it, and per model the final test PSNR / SSIM / LPIPS, steps, Gaussians and the
novel-view PSNR.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import header, results_dir, train_side_by_side, write_result
from process import WORK, colmap_poses, process, walk_truth
from rasterize_modes import final_metrics

MODELS = {"still": [], "motion": ["--model", "motion"], "4d": ["--model", "4d"]}  # still: the default
VIDEOS = {  # film_dynamic_video arguments
    "walk96": {"n_frames": 96, "width": 320, "height": 240, "fps": 10.0, "seed": 0},
    "walk150": {"n_frames": 150, "width": 480, "height": 272, "fps": 30.0, "seed": 1},
}
FOLDER = WORK.parent / "dynamic_video"


def posed_video(name: str) -> tuple[Path, dict, dict]:
    """The posed video (filmed and posed on the first call), its pose errors against the cameras
    that filmed it, and its posed cameras (name -> camera-to-world)."""
    from splat.datasets.capture.compare import pose_errors
    from splat.scenes import film_dynamic_video

    spec = VIDEOS[name]
    data = FOLDER / name
    row = {}
    if not (data / "sparse" / "0").is_dir():
        FOLDER.mkdir(parents=True, exist_ok=True)
        film_dynamic_video(FOLDER / f"{name}.mp4", **spec)
        row = process(FOLDER / f"{name}.mp4", data)
    ours, _ = colmap_poses(data)
    return data, {**row, "errors_vs_truth": pose_errors(ours, walk_truth(spec["n_frames"]))}, ours


def novel_view_psnr(ours: dict, name: str, runs: dict[str, Path]) -> dict[str, float]:
    """PSNR of each run over the novel views (module docstring), on the video's grey background;
    `ours`: the video's posed cameras (posed_video)."""
    import math

    import torch

    import splat
    from splat.camera import Camera
    from splat.datasets.capture.compare import similarity
    from splat.scenes import dynamic_scene_at
    from splat.scenes.dataset import render_rgba
    from splat.train.losses import psnr_from_mse

    spec = VIDEOS[name]
    width, height = spec["width"], spec["height"]
    truth = walk_truth(spec["n_frames"])
    names = sorted(set(ours) & set(truth))
    s, R, t = similarity(np.stack([ours[n][:3, 3] for n in names]), np.stack([truth[n][:3, 3] for n in names]))
    target, up = np.array([0.0, 0.0, 0.25]), np.array([0.0, 0.0, 1.0])
    views = []  # (camera in the filming frame, the same in the posed frame, time)
    for k in range(12):
        a = 1.5 * math.pi * (k + 0.5) / 12
        for z, r in ((2.3, 2.6), (0.9, 3.4)):
            eye = np.array([r * math.cos(a), r * math.sin(a), z])
            cams = [
                Camera.look_at(e, g, u, width=width, height=height, fov_x=55.0)
                for e, g, u in ((eye, target, up), (R.T @ (eye - t) / s, R.T @ (target - t) / s, R.T @ up))
            ]
            views.append((*cams, 1.0 - k / 11))
    grey = (0.5, 0.5, 0.5)
    truth_rgb = []
    for cam, _, time_ in views:
        rgba = render_rgba(
            dynamic_scene_at(time_, spec["seed"], speckled=True), cam.viewmat[None], cam.K, width, height
        )
        rgb, alpha = rgba[0, ..., :3] / 255.0, rgba[0, ..., 3:] / 255.0
        truth_rgb.append(torch.from_numpy(rgb * alpha + 0.5 * (1 - alpha)).float())
    scores = {}
    for model, run in runs.items():
        scene = splat.load(run)
        mse = torch.stack(
            [
                (scene.render(cam, time=time_ if scene.is_dynamic else None, background=grey)["rgb"].clamp(0, 1) - gt)
                .pow(2)
                .mean()
                for (_, cam, time_), gt in zip(views, truth_rgb)
            ]
        ).mean()
        scores[model] = float(psnr_from_mse(mse))
    return scores


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", default=",".join(VIDEOS), help=f"comma-separated, of: {', '.join(VIDEOS)}")
    p.add_argument("--seconds", type=float, default=300.0, help="training time of each run")
    args = p.parse_args(argv)
    videos = {}
    for name in [v for v in args.videos.split(",") if v]:
        data, posing, ours = posed_video(name)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            folders = train_side_by_side({m: (data, flags) for m, flags in MODELS.items()}, args.seconds, Path(tmp))
            wall = round(time.perf_counter() - t0, 1)
            rows = {model: final_metrics(folder) for model, folder in folders.items()}
            for model, psnr in novel_view_psnr(ours, name, folders).items():
                rows[model]["novel_view_psnr"] = psnr
        videos[name] = {"film": VIDEOS[name], "posing": posing, "wall_seconds": wall, "models": rows}
        scores = ", ".join(
            f"{m} {r.get('psnr', float('nan')):.2f} / {r['novel_view_psnr']:.2f}" for m, r in rows.items()
        )
        print(f"{name}: held-out frames / novel views, dB: {scores}", flush=True)
    result = {
        **header("dynamic_video", "cpu"),
        "seconds": args.seconds,
        "flags": MODELS,
        "videos": videos,
        "notes": "splat.scenes.film_dynamic_video(**film), posed by splat process; splat train DATA FLAGS "
        "--max-seconds SECONDS, defaults otherwise, the models at once, one CPU thread each (OMP_NUM_THREADS=1, "
        "SPLAT_NUM_THREADS=1) on 2 cores; final test metrics (every 8th frame held out); novel_view_psnr: 24 "
        "cameras off the walk at other times (bench/dynamic_video.py's docstring)",
    }
    out = write_result(results_dir() / "dynamic_video-cpu.json", result)
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
