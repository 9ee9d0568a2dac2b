"""Keep freed memory in the process instead of handing it back to the OS after every tensor.

glibc serves large blocks (above a threshold that starts at 128 KiB) with fresh mmap pages and
returns them on free; a CPU training step allocates and frees hundreds of megabytes of
temporaries, so every step page-faulted on each of them again: about 8,600 faults a late lego
step, which cost 4% of its time (bench/results/allocator-cpu.json). Raising the mmap threshold to
glibc's maximum (32 MiB on 64-bit) and not trimming the heap keeps those pages mapped for reuse;
the peak memory is unchanged, the process just does not shrink after it.
`SPLAT_KEEP_FREED_MEMORY=0` opts out.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
TRIM_THRESHOLD = 2**31 - 1  # the largest value mallopt's int takes: the heap is never trimmed in practice

_applied: bool | None = None


def glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (Linux), else None (musl and others: their mallopt differs)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def keep_freed_memory() -> bool:
    """Tune glibc's allocator once per process; True when it took effect."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    libc = None if os.environ.get("SPLAT_KEEP_FREED_MEMORY", "1") == "0" else glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
    _applied = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    return _applied
