#!/usr/bin/env python
"""Videos of a moving scene, trained as a still scene (the default) and as a moving one
(`--model motion`): the same `splat train` command on the same posed video, side by side.

    python bench/dynamic_video.py                  # both videos, 300 s per run
    python bench/dynamic_video.py --videos walk96 --seconds 600

Each video films the speckled moving scene with one walking camera (`splat.scenes.
film_dynamic_video`: a sphere bounces twice, a cube turns, a torus slides, one object appears and
one fades), at its own size, length and texture seed; `splat process` poses it once (kept under
outputs/bench/dynamic_video/). The two runs of a video train at once with one CPU core each.
Held out: every 8th frame, at a time and a camera between its neighbours'. Writes
bench/results/dynamic_video-<device>.json: per video the pose errors against the cameras that
filmed it, and per model the final test PSNR / SSIM / LPIPS, steps and Gaussians.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import header, results_dir, train_side_by_side, write_result
from process import WORK, colmap_poses, process
from rasterize_modes import final_metrics

MODELS = {"still": [], "motion": ["--model", "motion"]}  # still: the default for a video
VIDEOS = {  # film_dynamic_video arguments
    "walk96": {"n_frames": 96, "width": 320, "height": 240, "fps": 10.0, "seed": 0},
    "walk150": {"n_frames": 150, "width": 480, "height": 272, "fps": 30.0, "seed": 1},
}
FOLDER = WORK.parent / "dynamic_video"


def posed_video(name: str) -> tuple[Path, dict]:
    """The posed video (filmed and posed on the first call) and its pose errors."""
    from splat.datasets.capture.compare import pose_errors
    from splat.scenes import film_dynamic_video, walk_views

    spec = VIDEOS[name]
    data = FOLDER / name
    row = {}
    if not (data / "sparse" / "0").is_dir():
        FOLDER.mkdir(parents=True, exist_ok=True)
        film_dynamic_video(FOLDER / f"{name}.mp4", **spec)
        row = process(FOLDER / f"{name}.mp4", data)
    ours, _ = colmap_poses(data)
    truth = {f"frame_{k:06d}.jpg": np.linalg.inv(v) for k, v in enumerate(walk_views(spec["n_frames"]))}
    return data, {**row, "errors_vs_truth": pose_errors(ours, truth)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", default=",".join(VIDEOS), help=f"comma-separated, of: {', '.join(VIDEOS)}")
    p.add_argument("--seconds", type=float, default=300.0, help="training time of each run")
    args = p.parse_args(argv)
    videos = {}
    for name in [v for v in args.videos.split(",") if v]:
        data, posing = posed_video(name)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            folders = train_side_by_side({m: (data, flags) for m, flags in MODELS.items()}, args.seconds, Path(tmp))
            rows = {model: final_metrics(folder) for model, folder in folders.items()}
            wall = round(time.perf_counter() - t0, 1)
        videos[name] = {"film": VIDEOS[name], "posing": posing, "wall_seconds": wall, "models": rows}
        scores = ", ".join(f"{m} {r.get('psnr', float('nan')):.2f} dB" for m, r in rows.items())
        print(f"{name}: {scores} on {rows['motion'].get('num_images')} held-out frames", flush=True)
    result = {
        **header("dynamic_video", "cpu"),
        "seconds": args.seconds,
        "flags": MODELS,
        "videos": videos,
        "notes": "splat.scenes.film_dynamic_video(**film), posed by splat process; splat train DATA FLAGS "
        "--max-seconds SECONDS, defaults otherwise, both models at once, one CPU core each (OMP_NUM_THREADS=1, "
        "SPLAT_NUM_THREADS=1); final test metrics (every 8th frame held out)",
    }
    out = write_result(results_dir() / "dynamic_video-cpu.json", result)
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
