#!/usr/bin/env python
"""The CUDA acceptance run: every stage the engine must pass on a GPU, in one time-boxed run.

    python bench/gpu_check.py              # on a CUDA machine: <= 8 minutes, bench/results/*-cuda.json
    python bench/gpu_check.py --dry        # the same stages on the CPU at tiny sizes (CI), temp folder
    python bench/gpu_check.py --stages tests,fields --budget 120

Stages, each in its own subprocess with its own time box (a crash or a hang in one still leaves
the others' results), in this order:
  tests      tests/test_cuda.py: every kernel against its float64 twin on the device (3D, 4D, fields)
  fields     bench/fields.py: fused encoding+MLP against plain torch, queries/s
  render_4d  bench/render_4d.py: 4D render FPS at 100k and 1M Gaussians, 800x800
  viewer     bench/viewer.py: the viewer's server-side frame rate at 1280x720, 1M Gaussians
  lego       bench/train_lego.py: 2 minutes of training on lego_400, steps/s and PSNR at the end
  rasterize  bench/rasterize.py: forward/backward time and peak memory on 1M Gaussians at 1080p,
             against the pure-torch rasterizer on the same GPU and against gsplat when its JIT build
             (started in the background first thing) has finished in time
  rasterize_garden   the same on the garden points (skipped in a dry run: a full-size scene)
Data comes from ../shared/datasets (or --datasets DIR); a stage whose data is absent is skipped
with a message. Writes <results>/gpu_check-<device>.json (every stage's status, time and numbers)
beside each benchmark's own JSON, and prints a one-screen summary. Exit status 0 when every stage
that ran passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from common import DATASETS, header, write_result

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable

# Time boxes in seconds on CUDA (they add up to the 8-minute budget; a stage never gets more than
# what is left of --budget) and on the CPU in a dry run (generous: a dry run checks that the stages
# work, on a CI machine that may be loaded; it takes 1-2 minutes of CPU on two cores).
# On CUDA the first stage also pays Warp's first compile of each kernel module (NVRTC); the
# kernel cache it fills serves the later stages.
BOXES = {
    "tests": (110, 300),
    "fields": (30, 150),
    "render_4d": (35, 150),
    "viewer": (35, 150),
    "lego": (160, 200),
    "rasterize": (65, 250),
    "rasterize_garden": (45, 0),
}
BUDGET = (480.0, 1200.0)
STAGES = list(BOXES)
LEGO_SECONDS = (120, 4)


def lego_dry_data(tmp: Path) -> Path:
    """A tiny procedural Blender-format scene, so a dry run trains without the shared datasets."""
    from splat.scenes import dome_cameras, still_life, write_blender_dataset

    views, K = dome_cameras(12, 64, 48)
    write_blender_dataset(still_life(), tmp / "lego_dry", views, K, 64, 48, n_test=2)
    return tmp / "lego_dry"


def stage_commands(args, device: str, tmp: Path, results: Path, gsplat_ready, datasets: Path) -> dict:
    """stage -> (argv, result JSON name, skip reason or None); gsplat_ready() is asked at the
    rasterize stage's start, the latest moment."""
    dry = args.dry
    dev = ["--device", device]
    garden = datasets / "garden_points" / "test_garden.npz"
    lego = Path(args.lego).resolve() if args.lego else datasets / "lego_400"
    cmds = {
        "tests": (
            [
                PY,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                str(ROOT / "tests" / "test_cuda.py"),
                "-m",
                "cuda",
                f"--junitxml={tmp / 'tests.xml'}",
                *(["-k", "not (feature_channels and 32)"] if dry else []),
            ],
            None,
            None,
        ),
        "fields": (
            [
                PY,
                HERE / "fields.py",
                *dev,
                "--points",
                str(4096 if dry else 1 << 21),
                "--repeats",
                str(2 if dry else 10),
                *(["--levels", "4", "--log2-hashmap-size", "12"] if dry else []),
            ],
            f"fields-{device}.json",
            None,
        ),
        "render_4d": (
            [
                PY,
                HERE / "render_4d.py",
                *dev,
                "--sizes",
                "2000" if dry else "100000,1000000",
                "--frames",
                str(2 if dry else 10),
                *(["--width", "64", "--height", "64"] if dry else []),
            ],
            f"render_4d-{device}.json",
            None,
        ),
        "viewer": (
            [
                PY,
                HERE / "viewer.py",
                *dev,
                "--gaussians",
                str(2000 if dry else 1_000_000),
                "--frames",
                str(2 if dry else 30),
                "--training-steps",
                "0",
            ],
            f"viewer-{device}.json",
            None,
        ),
    }
    if dry:
        lego, lego_skip = None, None
    else:
        lego_skip = (
            None
            if (lego / "transforms_train.json").exists()
            else f"{lego} is absent (give --lego DIR or --datasets DIR)"
        )
    cmds["lego"] = (
        lambda: [
            PY,
            HERE / "train_lego.py",
            *dev,
            "--preset",
            "fast",
            "--max-seconds",
            str(LEGO_SECONDS[dry]),
            "--data",
            str(lego if lego else lego_dry_data(tmp)),
            "--out",
            str(tmp / "lego_run"),
            "--eval-subset",
            "2" if dry else "25",
            "--eval-every",
            "1000000",
        ],  # one eval: the final
        f"train_lego-fast-{device}.json",
        lego_skip,
    )

    def rasterize_cmd(scene, out):
        def cmd():
            peers = ["torch"] + (["gsplat"] if gsplat_ready() else [])
            return [
                PY,
                HERE / "rasterize.py",
                *dev,
                "--scenes",
                scene,
                "--peers",
                ",".join(peers),
                "--repeats",
                str(1 if dry else 5),
                "--peer-repeats",
                str(1 if dry else 3),
                "--reference-device",
                device,
                "--no-pixel",
                "--out",
                results / out,
            ]

        return cmd

    cmds["rasterize"] = (
        rasterize_cmd("synthetic_small" if dry else "synthetic_1m", f"rasterize-{device}.json"),
        f"rasterize-{device}.json",
        None,
    )
    garden_skip = (
        "dry run: the garden scene is full size" if dry else (None if garden.exists() else f"{garden} is absent")
    )
    cmds["rasterize_garden"] = (
        rasterize_cmd("garden", f"rasterize_garden-{device}.json"),
        f"rasterize_garden-{device}.json",
        garden_skip,
    )
    return cmds


def run_stage(argv, timeout: float, log: Path, env: dict) -> tuple[str, float, int | None]:
    """Run one stage in its own process group; on timeout the whole group is killed."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(
            [str(a) for a in argv], stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )
        try:
            rc = proc.wait(timeout=max(1.0, timeout))
            status = "ok" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc, status = None, "timeout"
    return status, time.perf_counter() - t0, rc


class GsplatBuild:
    """gsplat's CUDA extension, JIT-compiled by a background process started first thing: its
    rasterizer is a peer only if the build has finished, successfully, by the time it is needed."""

    def __init__(self, log: Path, env: dict, enabled: bool):
        self.log, self.proc, self.t0, self.seconds = log, None, time.perf_counter(), None
        if not enabled:
            return
        code = "from gsplat.cuda._backend import _C; import sys; sys.exit(0 if _C is not None else 3)"
        self.f = open(log, "w")
        # leave cores to the stages that run meanwhile
        env = {**env, "MAX_JOBS": env.get("MAX_JOBS", str(max(2, (os.cpu_count() or 4) // 2)))}
        self.proc = subprocess.Popen(
            [PY, "-c", code], stdout=self.f, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )

    def state(self) -> str:
        if self.proc is None:
            return "not started"
        rc = self.proc.poll()
        if rc is None:
            return "building"
        if self.seconds is None:
            self.seconds = time.perf_counter() - self.t0
        return "ready" if rc == 0 else f"failed (exit {rc})"

    def ready(self) -> bool:
        return self.state() == "ready"

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def junit_counts(path: Path) -> dict:
    if not path.exists():
        return {}
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    failed = [
        f"{c.get('classname')}::{c.get('name')}"
        for c in suite.iter("testcase")
        if c.find("failure") is not None or c.find("error") is not None
    ]
    n = int(suite.get("tests", 0))
    skipped = int(suite.get("skipped", 0))
    return {"passed": n - skipped - len(failed), "failed": len(failed), "skipped": skipped, "failures": failed}


def headline(stage: str, result: dict | None, extra: dict) -> str:
    """One line of the numbers that matter, from a stage's JSON."""
    if stage == "tests":
        c = extra.get("tests", {})
        if not c:
            return ""
        line = f"{c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped"
        return line + (f": {', '.join(c['failures'][:3])}" if c["failures"] else "")
    if result is None:
        return ""
    r = result.get("results")
    if stage == "fields":
        row = next(x for x in r if x["case"] == "encoding+MLP fused forward+backward")
        fwd = next(x for x in r if x["case"] == "encoding+MLP fused forward")
        return (
            f"fused fwd {fwd['queries_per_s'] / 1e6:.1f} M q/s (x{fwd['speedup']:.2f} torch), "
            f"fwd+bwd {row['queries_per_s'] / 1e6:.1f} M q/s (x{row['speedup']:.2f} torch)"
        )
    if stage == "render_4d":
        return ", ".join(f"{x['gaussians']:,}: {x['fps']:.1f} FPS (x{x['speedup_vs_torch_slicing']:.2f})" for x in r)
    if stage == "viewer":
        return ", ".join(f"{x['mode']}: {x['fps']:.1f} FPS" for x in r)
    if stage == "lego":
        f = result["final"]
        rate = f["step"] / f["train_seconds"]
        return f"{f['step']} steps in {f['train_seconds']:.0f} s ({rate:.1f} steps/s), PSNR {f['psnr']:.2f} dB"
    if stage.startswith("rasterize"):
        parts = []
        for x in r:
            if x["method"] == "splat":
                ratios = " ".join(
                    f"x{v['forward']:.1f}/x{v['forward_backward']:.1f} {p}" for p, v in x["speedup_vs"].items()
                )
                parts.append(
                    f"{x['scene']}: fwd {x['forward_ms']:.1f} ms, f+b {x['forward_backward_ms']:.1f} ms, "
                    f"{x['forward_backward_peak_mb']:.0f} MB; {ratios}"
                )
        return "; ".join(parts)
    return ""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry", action="store_true", help="the CPU at tiny sizes; results to a temporary folder")
    p.add_argument("--budget", type=float, default=None, help="seconds for the whole run (default 480; --dry: 1200)")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    p.add_argument("--results", default=None, help="results folder (default: bench/results; --dry: a temporary folder)")
    p.add_argument("--datasets", default=None, help="the shared datasets folder (default ../shared/datasets)")
    p.add_argument("--lego", default=None, help="the lego_400 folder (default <datasets>/lego_400)")
    p.add_argument("--no-gsplat", action="store_true", help="do not build gsplat for the rasterize comparison")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    if args.budget is None:
        args.budget = BUDGET[args.dry]
    stages = [s for s in args.stages.split(",") if s]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        print(f"gpu_check: unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}", file=sys.stderr)
        return 2
    datasets = Path(args.datasets).resolve() if args.datasets else DATASETS

    tmp = Path(tempfile.mkdtemp(prefix="splat-gpu-check-"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SPLAT_DATASETS": str(datasets)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), *filter(None, [env.get("PYTHONPATH")])])
    import torch

    if args.dry:
        device = "cpu"
        env["SPLAT_TEST_DEVICE"] = "cpu"  # tests/test_cuda.py runs its device tests on the CPU
    elif torch.cuda.is_available():
        device = "cuda"
    else:
        print(
            "gpu_check: no CUDA device here (torch.cuda.is_available() is False); run it with --dry "
            "(make gpu-check DRY=1) to check the stages on the CPU",
            file=sys.stderr,
        )
        return 2
    # gsplat's build starts first thing, so it overlaps every stage before the rasterize one
    gsplat = GsplatBuild(
        tmp / "gsplat_build.log",
        env,
        enabled=not (args.dry or args.no_gsplat) and any(s.startswith("rasterize") for s in stages),
    )
    results = Path(args.results).resolve() if args.results else (tmp / "results" if args.dry else HERE / "results")
    results.mkdir(parents=True, exist_ok=True)
    env["SPLAT_BENCH_RESULTS"] = str(results)
    print(
        f"gpu_check on {device} ({'dry run, tiny sizes' if args.dry else 'full sizes'}): stages {', '.join(stages)}; "
        f"budget {args.budget:.0f} s; logs in {tmp}",
        flush=True,
    )

    cmds = stage_commands(args, device, tmp, results, gsplat.ready, datasets)
    report = {}
    for stage in stages:
        argv, result_name, skip = cmds[stage]
        left = args.budget - (time.perf_counter() - t_start)
        entry = {"status": "skipped", "seconds": 0.0}
        if skip:
            entry["reason"] = skip
        elif left < 5:
            entry["reason"] = "no time left in the budget"
        else:
            try:
                argv = argv() if callable(argv) else argv
            except Exception as e:  # preparing the stage's input failed: the stage fails, the run goes on
                entry.update(status="failed", reason=f"{type(e).__name__}: {e}")
                argv = None
            if argv is not None:
                if stage.startswith("rasterize"):
                    entry["gsplat"] = gsplat.state()
                box = BOXES[stage][args.dry]
                log = tmp / f"{stage}.log"
                print(f"[{stage}] running (box {min(box, left):.0f} s) ...", flush=True)
                if result_name:
                    (results / result_name).unlink(missing_ok=True)  # never report an earlier run's numbers
                status, seconds, rc = run_stage(argv, min(box, left), log, env)
                entry.update(
                    status=status,
                    seconds=round(seconds, 1),
                    exit=rc,
                    log=str(log),
                    command=" ".join(str(a) for a in argv),
                )
                if status != "ok":
                    entry["log_tail"] = log.read_text(errors="replace")[-2500:]
        extra = {}
        if stage == "tests":
            extra["tests"] = junit_counts(tmp / "tests.xml")
            entry["tests"] = extra["tests"]
            if entry["status"] == "ok" and not extra["tests"].get("passed"):
                entry.update(status="failed", reason="no test ran")
        result = None
        if result_name and (results / result_name).exists() and entry["status"] == "ok":
            result = json.loads((results / result_name).read_text())
            entry["result_file"] = result_name
        try:
            entry["headline"] = headline(stage, result, extra)
        except (KeyError, StopIteration, TypeError, ZeroDivisionError) as e:
            entry["headline"] = f"(no headline: {type(e).__name__} {e})"
        entry["result"] = result
        report[stage] = entry
        print(
            f"[{stage}] {entry['status']} in {entry['seconds']:.0f} s {entry.get('reason', '')} {entry['headline']}",
            flush=True,
        )
    gsplat_state = gsplat.state()
    gsplat.stop()

    total = time.perf_counter() - t_start
    out = write_result(
        results / f"gpu_check-{device}.json",
        {
            **header("gpu_check", device),
            "dry": args.dry,
            "budget_seconds": args.budget,
            "total_seconds": round(total, 1),
            "gsplat_build": {
                "state": gsplat_state,
                "seconds": gsplat.seconds,
                "log_tail": gsplat.log.read_text(errors="replace")[-2000:] if gsplat.log.exists() else None,
            },
            "stages": report,
        },
    )

    # the one-screen summary
    name = header("gpu_check", device)["device_name"]
    print(
        f"\n=== gpu_check on {name} ({device}{', dry' if args.dry else ''}): {total:.0f} s of {args.budget:.0f} s ==="
    )
    for stage, e in report.items():
        why = e.get("reason") or ""
        print(f"{stage:16s} {e['status']:8s} {e['seconds']:4.0f} s  {(e['headline'] or why)[:220]}")
        if e["status"] in ("failed", "timeout") and e.get("log_tail"):
            tail = [ln for ln in e["log_tail"].splitlines() if ln.strip()][-3:]
            for ln in tail:
                print(f"{'':16s}   | {ln[:150]}")
    print(f"gsplat JIT build: {gsplat_state}" + (f" after {gsplat.seconds:.0f} s" if gsplat.seconds else ""))
    print(f"wrote {out}")
    bad = [s for s, e in report.items() if e["status"] in ("failed", "timeout")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
