"""Runs `splat` CLI commands in one long-lived process for the fuzz test (tests/test_fuzz.py):
one JSON request per stdin line ({"id": ..., "argv": [...]}), one result per stdout line prefixed
with RESULT: {"id", "rc", "err", "peak_rss_mb", "seconds"}. rc is the CLI's exit code, or "crash" when an
exception escaped main(). The parent enforces the time limit (it kills a worker that hangs)."""

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


def peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    import torch

    from splat import cli

    torch.set_num_threads(1)
    out = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        reset_peak_rss()
        t0 = time.perf_counter()
        err, junk = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(junk), contextlib.redirect_stderr(err):
                rc = cli.main(request["argv"])
        except SystemExit as e:  # argparse
            rc = e.code
        except BaseException:  # noqa: BLE001 - an escaped exception is what the fuzz test looks for
            rc, err = "crash", io.StringIO(traceback.format_exc())
        out.write(
            RESULT
            + json.dumps(
                {
                    "id": request["id"],
                    "rc": rc,
                    "err": err.getvalue(),
                    "peak_rss_mb": peak_rss_mb(),
                    "seconds": round(time.perf_counter() - t0, 3),
                }
            )
            + "\n"
        )
        out.flush()


if __name__ == "__main__":
    main()
