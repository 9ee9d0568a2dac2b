"""splat's own error types: what the CLI reports as one line (exit code 2) rather than as a bug.

    SplatError            base: a problem the user can fix; the message names the file or flag
      InputError          bad input files and flags (also a ValueError, for API callers)
      RunBusyError        the run folder is being written by another process
      DiskFullError       a write failed for lack of space (also an OSError)
      TrainingError       training cannot continue (e.g. the loss became NaN; also a RuntimeError)

Anything else that escapes a command is a bug in splat: the CLI prints its traceback and asks for
a report. So code raises these types only where the cause is the user's input, never to hide a bug.
"""

from __future__ import annotations

import errno


class SplatError(Exception):
    """A problem with the user's input or environment, reported as one line."""


class InputError(SplatError, ValueError):
    """A bad input file or argument (the message names it)."""


class RunBusyError(SplatError):
    """Another live process holds the run folder's lock (the message names its PID)."""


class DiskFullError(SplatError, OSError):
    """A write failed: no space left (the message says how much was needed)."""


class TrainingError(SplatError, RuntimeError):
    """Training cannot continue (e.g. the loss became NaN); the message says what to try."""


NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# errors of the environment (a path the user gave cannot be written), not of splat's code
UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.ENOENT, errno.EEXIST)


def is_user_error(e: BaseException) -> bool:
    """True for splat's own error types: these print as one line; everything else is a bug."""
    return isinstance(e, SplatError)


def write_error(path, e: OSError, needed_bytes: int | None = None) -> SplatError | None:
    """The one-line error for a failed write of `path`: DiskFullError (with the space needed and
    free) for a full disk or quota, InputError for an unwritable path; other OSErrors are re-raised
    by the caller as bugs (return None)."""
    import shutil
    from pathlib import Path

    if e.errno in NO_SPACE:
        folder = Path(path).parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            free = None
        need = f"about {_mb(needed_bytes)} needed" if needed_bytes else "space needed unknown"
        have = f", {_mb(free)} free" if free is not None else ""
        return DiskFullError(f"{path}: no space left on the device ({need}{have})")
    if e.errno in UNWRITABLE:
        return InputError(f"{path}: cannot write ({e.strerror})")
    return None


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n:,} bytes"
