#!/usr/bin/env python
"""Still scenes trained classic and antialiased, side by side: the same `splat train` command,
defaults otherwise, once with `--rasterize-mode classic` and once with `antialiased`, both at
once with one CPU core each (so that they share the machine's load) and the same time budget.

    python bench/rasterize_modes.py                        # lego_400 and beer, 600 s each
    python bench/rasterize_modes.py --scenes lego --seconds 300

`auto` trains moving 3D Gaussians antialiased and everything else classic; this measures what
antialiased would do for still scenes. Writes bench/results/rasterize_modes-<device>.json: per
scene and mode the final test PSNR / SSIM / LPIPS, steps and Gaussians.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import SCENES, evaluations, header, results_dir, run_records, shared_data, write_result

HERE = Path(__file__).resolve().parent
MODES = ("classic", "antialiased")


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
    args = p.parse_args(argv)
    splat_cli = Path(sys.executable).with_name("splat")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SPLAT_NUM_THREADS": "1"}
    scenes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for scene in [s for s in args.scenes.split(",") if s]:
            data = shared_data(SCENES[scene])
            if data is None:
                continue  # (shared_data said so)
            t0 = time.perf_counter()
            procs = {
                mode: subprocess.Popen(
                    [str(splat_cli), "train", str(data), "--rasterize-mode", mode, "--max-seconds", f"{args.seconds:g}"]
                    + ["--out", f"{tmp}/{scene}-{mode}"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for mode in MODES
            }
            rows = {}
            for mode, proc in procs.items():
                _, err = proc.communicate()
                if proc.returncode != 0:
                    print(f"{scene} {mode}: splat train failed ({proc.returncode}): {err[-500:]}", file=sys.stderr)
                    return 1
                rows[mode] = final_metrics(Path(tmp) / f"{scene}-{mode}")
            scenes[scene] = {"data": str(data), "wall_seconds": round(time.perf_counter() - t0, 1), "modes": rows}
            c, a = rows["classic"], rows["antialiased"]
            print(
                f"{scene}: classic {c.get('psnr', float('nan')):.2f} dB ({c.get('step')} steps), "
                f"antialiased {a.get('psnr', float('nan')):.2f} dB ({a.get('step')} steps)"
            )
    result = {
        **header("rasterize_modes", "cpu"),
        "seconds": args.seconds,
        "scenes": scenes,
        "notes": "splat train DATA --rasterize-mode MODE --max-seconds SECONDS, defaults otherwise; the two modes of a "
        "scene run at once, one CPU core each (OMP_NUM_THREADS=1, SPLAT_NUM_THREADS=1); final test metrics",
    }
    out = write_result(results_dir() / "rasterize_modes-cpu.json", result)
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
