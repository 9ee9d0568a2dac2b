#!/usr/bin/env python
"""A user's first run: `splat train DATA` with no flags (or only a time budget), timed from the
outside as a newcomer would see it, start-up and final evaluation included.

    python bench/train_defaults.py lego                    # splat train ../shared/datasets/lego_400
    python bench/train_defaults.py beer --max-seconds 600  # the 10-minute phone-capture run

Writes bench/results/train_defaults_<scene>-<device>.json: the command, wall time, the plan line
the CLI printed, final test PSNR / SSIM, Gaussians, steps, and the training log's step times and
(Gaussian, tile) pairs. The previous top level of that file (without its log), with any notes
added to it by hand, moves to the front of `earlier_runs`: runs on a shared machine are compared
with the ones before them, so none is dropped.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS, SCENES, cpu_steal_seconds, evaluations, header, run_records, shared_data, write_result

HERE = Path(__file__).resolve().parent


def with_earlier_runs(out: Path, result: dict) -> dict:
    """`result` on top of the file's history: its previous top level first in `earlier_runs`."""
    if not out.exists():
        return result
    try:
        previous = json.loads(out.read_text())
    except ValueError as e:
        print(f"{out}: not JSON ({e}); its earlier runs are not carried over", file=sys.stderr)
        return result
    earlier = previous.pop("earlier_runs", [])
    for key in ("benchmark", "versions", "log"):
        previous.pop(key, None)
    previous.setdefault("what", "the previous top level")
    return {**result, "earlier_runs": [previous, *earlier]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scene", choices=sorted(SCENES))
    p.add_argument("--max-seconds", type=float, help="the only flag passed on, when given")
    p.add_argument("--keep", action="store_true", help="keep the run folder (outputs/bench/defaults_<scene>)")
    args = p.parse_args(argv)
    data = shared_data(SCENES[args.scene])
    if data is None:
        return 1
    run = HERE.parent / "outputs" / "bench" / f"defaults_{args.scene}"
    shutil.rmtree(run, ignore_errors=True)
    splat_cli = Path(sys.executable).with_name("splat")
    command = [str(splat_cli), "train", str(data), "--out", str(run)]
    if args.max_seconds:
        command += ["--max-seconds", str(args.max_seconds)]
    steal0, t0 = cpu_steal_seconds(), time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    wall, steal1 = time.perf_counter() - t0, cpu_steal_seconds()
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        return 1
    records = run_records(run)
    final = evaluations(records)[-1]
    log = [r for r in records if "steps_per_second" in r]
    config = json.loads((run / "config.json").read_text())["config"]
    plan = next((line for line in proc.stdout.splitlines() if line.startswith("plan:")), "")
    result = {
        **header("train_defaults", config["device"]),
        "scene": args.scene,
        "command": " ".join(
            ["splat", *command[1:2], f"../shared/datasets/{SCENES[args.scene]}"]
            + (["--max-seconds", str(args.max_seconds)] if args.max_seconds else [])
        ),
        "plan_line": plan,
        "preset": config["preset"],
        "downscale": config["downscale"],
        "wall_seconds": round(wall, 1),
        # CPU time the hypervisor gave other guests during the run (both CPUs): a shared machine's
        # speed varies by tens of percent within a day; this says how much of it the run lacked
        "cpu_steal_seconds": None if steal0 is None else round(steal1 - steal0, 1),
        "final": {
            "step": final["step"],
            "train_seconds": final["train_seconds"],
            **final["eval"],
            "num_gaussians": final.get("num_gaussians"),
        },
        "log": [
            {k: r.get(k) for k in ("step", "train_seconds", "steps_per_second", "tile_pairs", "num_gaussians", "psnr")}
            for r in log
        ],
    }
    path = RESULTS / f"train_defaults_{args.scene}-{config['device']}.json"
    out = write_result(path, with_earlier_runs(path, result))
    e = final["eval"]
    print(
        f"{plan}\n{result['command']}: {e['psnr']:.2f} dB PSNR, SSIM {e['ssim']:.4f} on {e['num_images']} {e['split']} "
        f"images, step {final['step']}, {final.get('num_gaussians', 0):,} Gaussians; {wall:.0f} s wall -> {out}"
    )
    if not args.keep:
        shutil.rmtree(run, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
