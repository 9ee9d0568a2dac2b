"""Runs `splat` CLI commands, or one of splat's readers on a file, in one long-lived process for
the fuzz tests (tests/test_fuzz.py, bench/fuzz_readers.py): one JSON request per stdin line
({"id": ..., "argv": [...]} or {"id": ..., "read": KIND, "path": ...}), one result per stdout line
prefixed with RESULT: {"id", "rc", "err", "peak_rss_mb", "peak_delta_bytes", "seconds"}. rc is the
CLI's exit code (a reader: 0, or 2 for splat's own error types), or "crash" when any other
exception escaped. peak_delta_bytes: how far the resident size rose above its size when the
request came. The parent enforces the time limit (it kills a worker that hangs)."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
import traceback
from pathlib import Path

RESULT = "RESULT:"


def reset_peak_rss() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)


def rss_bytes(key: str = "VmRSS") -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def read(kind: str, path: str) -> None:
    """One of splat's readers, as the commands use it (READERS in tests/fuzz_files.py)."""
    import splat
    from splat.datasets import load_dataset
    from splat.datasets.images import read_image
    from splat.formats import read_splats

    if kind == "all":  # a warm-up: every seed, unmutated
        for seed_kind, seed_path in path:
            read(seed_kind, seed_path)
    elif kind == "splat":
        read_splats(path)
    elif kind == "checkpoint":
        splat.load(path, with_cameras=False)
    elif kind == "dataset":
        load_dataset(path).image(0)
    elif kind == "image":
        read_image(Path(path))
    elif kind == "camera_path":
        splat.trajectories.from_json(path)
    else:
        raise ValueError(f"unknown reader {kind!r}")


def peak_rss_mb() -> float:
    peak = rss_bytes("VmHWM")
    if peak:
        return peak / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    import torch

    import splat.trajectories  # noqa: F401 - for read()
    from splat import cli
    from splat.errors import is_user_error

    torch.set_num_threads(1)
    out = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        reset_peak_rss()
        before = rss_bytes()
        t0 = time.perf_counter()
        err, junk = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(junk), contextlib.redirect_stderr(err):
                if "read" in request:
                    read(request["read"], request.get("path") or request["seeds"])
                    rc = 0
                else:
                    rc = cli.main(request["argv"])
        except SystemExit as e:  # argparse
            rc = e.code
        except BaseException as e:  # noqa: BLE001 - an escaped exception is what the fuzz test looks for
            if "read" in request and is_user_error(e):
                rc, err = 2, io.StringIO(f"error: {e}")
            else:
                rc, err = "crash", io.StringIO(traceback.format_exc())
        out.write(
            RESULT
            + json.dumps(
                {
                    "id": request["id"],
                    "rc": rc,
                    "err": err.getvalue(),
                    "peak_rss_mb": peak_rss_mb(),
                    "peak_delta_bytes": rss_bytes("VmHWM") - before,
                    "seconds": round(time.perf_counter() - t0, 3),
                }
            )
            + "\n"
        )
        out.flush()


if __name__ == "__main__":
    main()
