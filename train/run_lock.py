"""One writer per run folder: an exclusive OS file lock on `RUN/.lock`, held while a process
trains in the folder and released by the OS when the process dies (kill -9 included).

`splat eval` writes to the folder too (metrics.jsonl, renders/) and takes the lock while it
evaluates. Readers (`export`, `view`, `splat.load`) take no lock: checkpoints are written to a
temporary file and renamed, so they always see the newest complete one. `.lock` is opened without
following a symbolic link (a link planted there would otherwise have its target truncated).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from splat.errors import RunBusyError, write_error
from splat.io_utils import open_in_place

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; runs are not guarded there
    fcntl = None

LOCK_NAME = ".lock"
_held: dict[Path, int] = {}  # resolved run folder -> open, locked file descriptor


def lock_run(run_dir: str | os.PathLike) -> bool:
    """Take the run folder's lock for this process (created if needed). True when taken now, False
    when this process already holds it; RunBusyError naming the holder's PID when another does.
    In a distributed run rank 0 holds it for every rank (they write one folder together)."""
    run_dir = Path(run_dir)
    if _distributed_rank() > 0:
        return False
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        key = run_dir.resolve()
        if key in _held:
            return False
        fd = open_in_place(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    except OSError as e:
        raise (write_error(run_dir / LOCK_NAME, e) or e) from None
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunBusyError(
                f"{run_dir}: in use by another splat process (PID {holder}) that is training in it; "
                "wait for it to finish or stop it (a new run: choose another --out)"
            ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[key] = fd
    remove_stale_temp_files(run_dir)
    return True


def _distributed_rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def holds_lock(run_dir: str | os.PathLike) -> bool:
    """Whether this process holds the run folder's lock."""
    return Path(run_dir).resolve() in _held


def unlock_run(run_dir: str | os.PathLike) -> None:
    fd = _held.pop(Path(run_dir).resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike):
    """Hold the lock for the block (or keep holding it, when this process already did)."""
    taken = lock_run(run_dir)
    try:
        yield
    finally:
        if taken:
            unlock_run(run_dir)


def remove_stale_temp_files(run_dir: Path) -> list[Path]:
    """Temporary files a killed writer left behind (`.step_N.pt.XXXX.tmp.pt`, `.config.json.XXXX.tmp.json`):
    only the lock holder writes these, so once it holds the lock any that exist are stale."""
    stale = list((run_dir / "checkpoints").glob(".step_*.tmp.pt")) + list(run_dir.glob(".config.json.*.tmp.json"))
    stale += list(run_dir.glob(".metrics.jsonl.*.tmp.jsonl"))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
