"""What every benchmark records next to its numbers: device, versions, date; atomic JSON writes."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


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

    v = {"python": platform.python_version(), "torch": torch.__version__, "warp": warp.__version__,
         "splat": splat.__version__}  # fmt: skip
    try:
        import gsplat

        v["gsplat"] = gsplat.__version__
    except ImportError:
        pass
    return v


def header(benchmark: str, device: str) -> dict:
    return {"benchmark": benchmark, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": device, "device_name": device_name(device), "versions": versions()}  # fmt: skip


def write_result(out: Path, result: dict) -> Path:
    """Write the result JSON atomically (an interrupted benchmark never leaves half a file)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    return out
