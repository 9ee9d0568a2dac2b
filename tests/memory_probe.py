"""Peak memory of one action in a fresh process, for the tests of hostile files: `setup` runs first
(imports, warm-up), then the peak resident size is reset and `action` runs; the result is how far
the peak rose above the resident size before the action, and how the action ended. The process
runs under an address-space limit, so an unbounded allocation fails there instead of taking the
machine down."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADDRESS_SPACE_LIMIT = 8 << 30

PROBE = """
import json, resource, sys, traceback
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))

def status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

{setup}
Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) restarts from the current size
before = status("VmRSS")
from splat.errors import is_user_error
try:
{action}
    outcome, message = "ok", ""
except BaseException as e:
    outcome = "input error" if is_user_error(e) else "bug"
    message = str(e) if is_user_error(e) else traceback.format_exc()
print("PROBE:" + json.dumps({{"peak_bytes": status("VmHWM") - before, "outcome": outcome, "message": message}}))
"""


def peak_memory(action: str, setup: str = "", timeout: float = 300) -> dict:
    """{"peak_bytes", "outcome": "ok" | "input error" | "bug", "message"} of `action` (Python source)."""
    code = PROBE.format(
        limit=ADDRESS_SPACE_LIMIT, setup=textwrap.dedent(setup), action=textwrap.indent(textwrap.dedent(action), "    ")
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("PROBE:"):
            return json.loads(line[len("PROBE:") :])
    raise AssertionError(f"the probe process died (exit {proc.returncode}): {proc.stderr[-2000:]}")


def bound(input_bytes: int) -> int:
    """The memory a reader may take for an input of this size: 64 x the input + 200 MB."""
    return 64 * input_bytes + (200 << 20)
