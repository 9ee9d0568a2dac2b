#!/usr/bin/env python
"""Still scenes trained with two rasterizer settings side by side: the same `splat train` command,
defaults otherwise, both at once with one CPU core each (so that they share the machine's load)
and the same time budget.

    python bench/rasterize_modes.py                        # classic against antialiased, lego_400 and beer, 600 s
    python bench/rasterize_modes.py --pair filter --seconds 300   # low-pass filter eps2d 0.3 against 0.1

Pairs: `modes`, `--rasterize-mode classic` against `antialiased` (both with 3DGS's filter, eps2d
0.3: `auto` trains moving 3D Gaussians antialiased and everything else classic, and this measures
what antialiased would do for still scenes); `filter`, the classic rasterizer with `--eps2d 0.3`
against `0.1` (what still scenes train with by default). Writes
bench/results/rasterize_modes-<device>.json (modes) or rasterize_filter-<device>.json (filter):
per scene and setting the final test PSNR / SSIM / LPIPS, steps and Gaussians.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import SCENES, evaluations, header, results_dir, run_records, shared_data, train_side_by_side, write_result

HERE = Path(__file__).resolve().parent
PAIRS = {  # pair: {setting: splat train flags}
    "modes": {
        "classic": ["--rasterize-mode", "classic", "--eps2d", "0.3"],
        "antialiased": ["--rasterize-mode", "antialiased", "--eps2d", "0.3"],
    },
    "filter": {
        "eps2d_0.3": ["--rasterize-mode", "classic", "--eps2d", "0.3"],
        "eps2d_0.1": ["--rasterize-mode", "classic", "--eps2d", "0.1"],
    },
}
RESULTS = {"modes": "rasterize_modes", "filter": "rasterize_filter"}
ROW_KEY = {"modes": "modes", "filter": "settings"}  # where a scene's rows are in the results


def final_metrics(run: Path) -> dict:
    """The last evaluation of a run's metrics.jsonl: step, Gaussians and the test metrics."""
    evals = evaluations(run_records(run))
    if not evals:
        return {}
    last = evals[-1]
    return {"step": last["step"], "num_gaussians": last.get("num_gaussians"), **last["eval"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", default="lego,beer", help=f"comma-separated, of: {', '.join(sorted(SCENES))}")
    p.add_argument("--seconds", type=float, default=600.0, help="training time of each run")
    p.add_argument("--pair", choices=sorted(PAIRS), default="modes", help="which two settings (default: modes)")
    args = p.parse_args(argv)
    scenes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for scene in [s for s in args.scenes.split(",") if s]:
            data = shared_data(SCENES[scene])
            if data is None:
                continue  # (shared_data said so)
            t0 = time.perf_counter()
            runs = {mode: (data, flags) for mode, flags in PAIRS[args.pair].items()}
            folders = train_side_by_side(runs, args.seconds, Path(tmp) / scene)
            rows = {mode: final_metrics(folder) for mode, folder in folders.items()}
            wall = round(time.perf_counter() - t0, 1)
            scenes[scene] = {"data": str(data), "wall_seconds": wall, ROW_KEY[args.pair]: rows}
            scores = [f"{m} {r.get('psnr', float('nan')):.2f} dB ({r.get('step')} steps)" for m, r in rows.items()]
            print(f"{scene}: " + ", ".join(scores))
    result = {
        **header(RESULTS[args.pair], "cpu"),
        "seconds": args.seconds,
        "flags": PAIRS[args.pair],
        "scenes": scenes,
        "notes": "splat train DATA FLAGS --max-seconds SECONDS, defaults otherwise; the two settings of a scene run "
        "at once, one CPU core each (OMP_NUM_THREADS=1, SPLAT_NUM_THREADS=1); final test metrics",
    }
    out = write_result(results_dir() / f"{RESULTS[args.pair]}-cpu.json", result)
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
