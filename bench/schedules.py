#!/usr/bin/env python
"""The cpu preset's schedule against variants, on lego_400 under the same time budget measured in
CPU time, so that runs side by side compare fairly on a shared machine.

    python bench/schedules.py                      # the default, later densification, lower threshold
    python bench/schedules.py --cpu-seconds 600    # a shorter budget

Each variant is `splat train` with the cpu preset in its own process, side by side, its schedule
driven by a clock that counts the process's own CPU seconds (user + sys, all threads): the
hypervisor's steal and the neighbours' share of the cores do not count, so every variant gets the
same work budget whatever the machine does meanwhile. Each is evaluated on all 200 test images.
Writes bench/results/schedules-cpu.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import RESULTS, header, shared_data, write_result

HERE = Path(__file__).resolve().parent
VARIANTS = {
    "default": {},
    "densify until 65% of the run": {"refine_stop": 19_500},
    "growth threshold 1.5e-4": {"grow_grad2d": 0.00015},
}

RUN_SNIPPET = """
import json, resource, sys
from pathlib import Path
from splat.train.config import preset_config
from splat.train.runs import new_trainer
data, out, budget, overrides = sys.argv[1], sys.argv[2], float(sys.argv[3]), json.loads(sys.argv[4])

def cpu_seconds():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime

cfg = preset_config("cpu", device="cpu", max_train_seconds=budget, eval_steps=[], save_renders=False,
                    checkpoint_minutes=0, checkpoint_every=10**9)
for key, value in overrides.items():
    setattr(cfg, key, value)
trainer = new_trainer(data, Path(out), cfg)
used = 0.0
trainer.progress = lambda step: min(1.0, used / budget)  # the schedule follows CPU time
while used < budget:
    start = cpu_seconds()
    trainer.train_step()
    used += cpu_seconds() - start
result = trainer.evaluate(full=True, save_renders=False)["eval"]
print(json.dumps({"steps": trainer.step, "gaussians": trainer.num_gaussians, "cpu_seconds": round(used, 1),
                  **{k: result[k] for k in ("psnr", "ssim", "lpips", "num_images")}}))
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu-seconds", type=float, default=1200.0, help="each variant's budget in CPU seconds")
    args = p.parse_args(argv)
    data = shared_data("lego_400")
    if data is None:
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "run.py"
        script.write_text(RUN_SNIPPET)
        budget = str(args.cpu_seconds)
        procs = {
            name: subprocess.Popen(
                [sys.executable, str(script), str(data), str(Path(tmp) / f"run{i}"), budget, json.dumps(o)],
                stdout=subprocess.PIPE,
                text=True,
                cwd=tmp,  # not this checkout's folder: the installed splat runs
            )
            for i, (name, o) in enumerate(VARIANTS.items())
        }
        rows = {}
        for name, proc in procs.items():
            stdout, _ = proc.communicate()
            if proc.returncode != 0:
                print(f"{name}: exit {proc.returncode}", file=sys.stderr)
                return 1
            rows[name] = {"overrides": VARIANTS[name], **json.loads(stdout.strip().splitlines()[-1])}
    result = {**header("schedules", "cpu"), "data": "lego_400", "cpu_seconds_budget": args.cpu_seconds}
    result["variants"] = rows
    out = write_result(RESULTS / "schedules-cpu.json", result)
    for name, r in rows.items():
        print(f"{name}: {r['psnr']:.2f} dB, {r['steps']} steps, {r['gaussians']:,} Gaussians")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
