#!/usr/bin/env python
"""Training steps with glibc's default allocator behaviour against `splat.allocator.keep_freed_memory`
(large freed blocks kept for reuse instead of unmapped): milliseconds and page faults a step.

    python bench/allocator.py                     # lego_400 at full resolution, a fresh default trainer
    python bench/allocator.py --run runs/lego     # late steps: restored from a finished run folder

Each setting runs in its own process (the tuning is per process), alternated `--rounds` times so
that both see the same machine; the median over rounds is reported. Writes
bench/results/allocator-cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from common import DATASETS, header, results_dir, write_result

SNIPPET = """
import json, resource, sys, tempfile, time
from pathlib import Path
data, run, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
if run:
    from splat.train.runs import restore_trainer
    tr = restore_trainer(Path(run), overrides={"max_train_seconds": 0.0, "steps": 10**7, "checkpoint_every": 10**9})
else:
    from splat.train.config import preset_config
    from splat.train.runs import new_trainer
    cfg = preset_config("auto", device="cpu", eval_steps=[], resolution_schedule=[], checkpoint_every=10**9)
    tmp = tempfile.TemporaryDirectory()  # removed when the process ends
    tr = new_trainer(data, Path(tmp.name) / "run", cfg)
tr.downscale_at = lambda step: 1  # full resolution throughout
for _ in range(5):
    tr.train_step()
usage = lambda: resource.getrusage(resource.RUSAGE_SELF)
u0, t0 = usage(), time.perf_counter()
for _ in range(steps):
    tr.train_step()
wall, u1 = time.perf_counter() - t0, usage()
cpu = u1.ru_utime + u1.ru_stime - u0.ru_utime - u0.ru_stime
print(json.dumps({
    "ms_per_step": wall / steps * 1e3, "cpu_ms_per_step": cpu / steps * 1e3,
    "page_faults_per_step": (u1.ru_minflt - u0.ru_minflt) / steps, "step": tr.step, "num_gaussians": tr.num_gaussians,
}))
"""


def measure(data: str, run: str, steps: int, keep: bool) -> dict:
    env = {**os.environ, "SPLAT_KEEP_FREED_MEMORY": "1" if keep else "0"}
    out = subprocess.run(
        [sys.executable, "-c", SNIPPET, data, run, str(steps)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DATASETS / "lego_400"))
    p.add_argument("--run", default="", help="a finished run folder to restore (late-training steps)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    if not args.run and not os.path.isdir(args.data):
        print(f"{args.data} is absent: nothing to benchmark (see ../shared/datasets/README.md)", file=sys.stderr)
        return 1
    rows = {"glibc_default": [], "keep_freed_memory": []}
    for r in range(args.rounds):
        for name, keep in (("glibc_default", False), ("keep_freed_memory", True)):
            rows[name].append(measure(args.data, args.run, args.steps, keep))
            m = rows[name][-1]
            print(
                f"round {r + 1} {name}: {m['ms_per_step']:.1f} ms/step, {m['cpu_ms_per_step']:.1f} ms CPU, "
                f"{m['page_faults_per_step']:.0f} page faults/step ({m['num_gaussians']:,} G, step {m['step']})"
            )
    median = {
        k: {f: statistics.median(m[f] for m in v) for f in ("ms_per_step", "cpu_ms_per_step", "page_faults_per_step")}
        for k, v in rows.items()
    }
    default, kept = median["glibc_default"], median["keep_freed_memory"]
    ratio = default["ms_per_step"] / kept["ms_per_step"]
    print(
        f"median: {default['ms_per_step']:.1f} vs {kept['ms_per_step']:.1f} ms/step (x{ratio:.2f}), "
        f"page faults {default['page_faults_per_step']:.0f} vs {kept['page_faults_per_step']:.0f} a step"
    )
    result = {
        **header("allocator", "cpu"),
        "data": args.data,
        "restored_from_run": bool(args.run),
        "steps_per_measurement": args.steps,
        "rounds": rows,
        "median": median,
        "default_over_kept": ratio,
        "notes": "full-resolution training steps, each setting in its own process, alternated",
    }
    out = write_result(results_dir() / "allocator-cpu.json", result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
