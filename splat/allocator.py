"""Keep freed memory in the process instead of handing it back to the OS after every tensor.

glibc serves large blocks (above a threshold that starts at 128 KiB) with fresh mmap pages and
returns them on free; a CPU training step allocates and frees hundreds of megabytes of
temporaries, so every step page-faulted on each of them again: about 10,000 faults and 15% of a
late lego step (bench/results/step_cost-cpu.json). Raising the mmap threshold to glibc's maximum
(32 MiB on 64-bit) and not trimming the heap keeps those pages mapped for reuse; the peak memory
is unchanged, the process just does not shrink after it. `SPLAT_KEEP_FREED_MEMORY=0` opts out.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's HEAP_MAX-bound maximum on 64-bit
TRIM_THRESHOLD = 1 << 40  # effectively never trim

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Tune glibc's allocator once per process (Linux + glibc only); True when it took effect."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux") or os.environ.get("SPLAT_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: their mallopt differs
            return False
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
    ok = mallopt(M_TRIM_THRESHOLD, min(TRIM_THRESHOLD, 2**31 - 1)) == 1 and ok
    _applied = ok
    return ok
