#!/usr/bin/env python
"""A video of a moving scene, trained as a still scene (the default) and as a moving one
(`--model motion`): the same `splat train` command on the same posed video, side by side.

    python bench/dynamic_video.py                  # 300 s each
    python bench/dynamic_video.py --seconds 600

The video is the speckled moving scene filmed by one walking camera (`splat.scenes.
film_dynamic_video`, 96 frames at 320x240: a sphere bounces, a cube turns, a torus slides, one
object appears and one fades), posed once by `splat process` (bench/process.py's moving-video
case, reused when it is there). Both runs train at once with one CPU core each. Held out: every
8th frame, at a time and a camera between its neighbours'. Writes
bench/results/dynamic_video-<device>.json: per model the final test PSNR / SSIM / LPIPS, steps and
Gaussians.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import process
from common import header, results_dir, train_side_by_side, write_result
from rasterize_modes import final_metrics

MODELS = {"still": [], "motion": ["--model", "motion"]}  # still: the default for a video


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=300.0, help="training time of each run")
    args = p.parse_args(argv)
    data = process.WORK / "moving-video"
    if not (data / "sparse" / "0").is_dir():
        print(process.moving_video_case(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        folders = train_side_by_side({m: (data, flags) for m, flags in MODELS.items()}, args.seconds, Path(tmp))
        rows = {model: final_metrics(folder) for model, folder in folders.items()}
        wall = round(time.perf_counter() - t0, 1)
    for model, row in rows.items():
        print(f"{model}: {row.get('psnr', float('nan')):.2f} dB on {row.get('num_images')} held-out frames")
    result = {
        **header("dynamic_video", "cpu"),
        "data": f"splat.scenes.film_dynamic_video, {process.MOVING_FRAMES} frames at 320x240, posed by splat process",
        "seconds": args.seconds,
        "wall_seconds": wall,
        "flags": MODELS,
        "models": rows,
        "notes": "splat train DATA FLAGS --max-seconds SECONDS, defaults otherwise; both at once, one CPU core "
        "each (OMP_NUM_THREADS=1, SPLAT_NUM_THREADS=1); final test metrics (every 8th frame held out)",
    }
    out = write_result(results_dir() / "dynamic_video-cpu.json", result)
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
