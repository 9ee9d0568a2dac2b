"""What every benchmark records next to its numbers: device, versions, date; atomic JSON writes."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# Where the shared datasets are: ../shared/datasets beside the repository, unless SPLAT_DATASETS
# names another folder (a machine where the repository was copied without its ../shared).
DATASETS = Path(os.environ.get("SPLAT_DATASETS") or Path(__file__).resolve().parents[2] / "shared" / "datasets")


# The shared scenes the training benches take by a short name.
SCENES = {"lego": "lego_400", "beer": "beer"}


def shared_data(folder: str) -> Path | None:
    """DATASETS / folder, or None after saying on stderr that it is absent (benches then exit 1)."""
    data = DATASETS / folder
    if data.is_dir():
        return data
    print(f"{data} is absent: nothing to benchmark (see ../shared/datasets/README.md)", file=sys.stderr)
    return None


def results_dir() -> Path:
    """bench/results, or SPLAT_BENCH_RESULTS when set (`gpu_check.py --dry` writes to a temporary folder)."""
    return Path(os.environ.get("SPLAT_BENCH_RESULTS") or RESULTS)


def device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def versions() -> dict:
    import torch
    import warp

    import splat

    v = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "warp": warp.__version__,
        "splat": splat.__version__,
    }
    try:
        import gsplat

        v["gsplat"] = gsplat.__version__
    except ImportError:
        pass
    return v


def header(benchmark: str, device: str) -> dict:
    return {
        "benchmark": benchmark,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "device_name": device_name(device),
        "versions": versions(),
    }


def frame_times(fn, n: int, device) -> list[float]:
    """Seconds of each of n calls fn(1) .. fn(n) after a warm-up call fn(0) (kernel compilation,
    allocator), synchronising CUDA around each so GPU time is counted."""
    import torch

    cuda = torch.device(device).type == "cuda"
    fn(0)
    out = []
    for k in range(1, n + 1):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn(k)
        if cuda:
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return out


def write_result(out: Path, result: dict) -> Path:
    """Write the result JSON atomically (an interrupted benchmark never leaves half a file)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    return out


def run_records(run: Path) -> list[dict]:
    """A run folder's metrics.jsonl, one dict per line, in order (training logs and evaluations)."""
    return [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines() if line.strip()]


def evaluations(records: list[dict]) -> list[dict]:
    """The evaluation records among `run_records` (each has an "eval" dict), in order."""
    return [r for r in records if "eval" in r]


def cpu_steal_seconds() -> float | None:
    """Seconds of CPU time the hypervisor gave to other guests so far (all CPUs, /proc/stat's
    steal column): on a shared virtual machine, the difference across a run says how much of the
    machine it did not get. None where /proc/stat is absent."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def train_side_by_side(runs: dict[str, tuple[Path, list[str]]], seconds: float, out_dir: Path) -> dict[str, Path]:
    """`splat train DATA FLAGS --max-seconds SECONDS` for each label -> (DATA, FLAGS), all at once
    with one CPU thread each, so that a machine shared with other work slows them alike. Returns the
    run folders (under `out_dir`); SystemExit(1) with the end of its stderr when one fails."""
    import subprocess

    splat_cli = Path(sys.executable).with_name("splat")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SPLAT_NUM_THREADS": "1"}
    folders = {label: Path(out_dir) / f"run{k}" for k, label in enumerate(runs)}
    procs = {
        label: subprocess.Popen(
            [str(splat_cli), "train", str(data), *flags, "--max-seconds", f"{seconds:g}", "--out", str(folders[label])],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for label, (data, flags) in runs.items()
    }
    for label, proc in procs.items():
        _, err = proc.communicate()
        if proc.returncode != 0:
            print(f"{label}: splat train failed ({proc.returncode}): {err[-500:]}", file=sys.stderr)
            raise SystemExit(1)
    return folders
