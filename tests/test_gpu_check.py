"""`make gpu-check DRY=1`: the CUDA acceptance run's stages, on the CPU at tiny sizes, so the
script that a short GPU window depends on cannot rot where CI has no GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import gpu_check  # noqa: E402


@pytest.mark.slow
def test_dry_run_passes_every_stage(tmp_path):
    proc = subprocess.run(
        [sys.executable, BENCH / "gpu_check.py", "--dry", "--results", tmp_path],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check-cpu.json").read_text())
    assert report["dry"] and list(report["stages"]) == gpu_check.STAGES
    assert report["stages"]["rasterize_garden"]["status"] == "skipped"  # full size: not in a dry run
    for stage, e in report["stages"].items():
        if stage == "rasterize_garden":
            continue
        assert e["status"] == "ok", (stage, e.get("reason"), e.get("log_tail"))
        assert e["headline"] and not e["headline"].startswith("(no headline"), stage
    assert report["stages"]["tests"]["tests"]["passed"] >= 10 and report["stages"]["tests"]["tests"]["failed"] == 0
    for name in ("fields", "render_4d", "viewer", "train_lego-fast", "rasterize"):
        assert (tmp_path / f"{name}-cpu.json").exists(), name
    assert "=== gpu_check on" in proc.stdout  # the one-screen summary
    assert not list((BENCH / "results").glob("*-cpu.json.tmp"))


def test_a_hanging_stage_is_killed_at_its_box_and_reported(tmp_path):
    status, seconds, rc = gpu_check.run_stage(
        [sys.executable, "-c", "import time; time.sleep(60)"], 1.0, tmp_path / "log", {}
    )
    assert status == "timeout" and rc is None and seconds < 10
    status, _, rc = gpu_check.run_stage([sys.executable, "-c", "raise SystemExit(3)"], 10.0, tmp_path / "log", {})
    assert status == "failed" and rc == 3


def test_without_cuda_it_says_so(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = subprocess.run(
        [sys.executable, BENCH / "gpu_check.py", "--results", tmp_path], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr and "DRY=1" in proc.stderr


def test_unknown_stage_is_refused():
    proc = subprocess.run(
        [sys.executable, BENCH / "gpu_check.py", "--dry", "--stages", "tests,bogus"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "bogus" in proc.stderr
