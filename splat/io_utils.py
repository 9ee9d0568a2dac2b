"""File output helpers: every write goes to a temporary file next to the target, which is flushed
to the disk (fsync), then renamed over the target and the rename itself flushed (the folder's
fsync): an interrupted run, or a power loss, leaves the old file or the new one, never half of
one. The file gets the mode the umask asks for (as `open` would give it). Checkpoints are read
without running code (`load_weights_only`; a run folder's checkpoints: splat/run_folder.py)."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

import numpy as np

from .errors import InputError


def _read_umask() -> int:
    """The process umask, without changing it where /proc tells (os.umask's set-and-restore
    would briefly change it for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _read_umask()


def file_mode() -> int:
    """The mode a new file gets from `open`: 0o666 less the umask (mkstemp's files are 0o600)."""
    return 0o666 & ~(_read_umask() if os.path.exists("/proc/self/status") else _UMASK_AT_IMPORT)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, size_hint: int | None = None):
    """Yield a temporary path in the target's folder; on success it replaces `path` atomically.
    A write that fails for lack of space (or an unwritable folder) removes the temporary file and
    raises DiskFullError (InputError) naming `path` (and `size_hint`, the bytes it needed)."""
    from .errors import write_error

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise (write_error(path, e, size_hint) or e) from None
    try:
        yield Path(tmp)
        os.chmod(tmp, file_mode())
        _fsync(tmp)  # the data on the disk before the rename makes it the file
        os.replace(tmp, path)
        _fsync(path.parent, folder=True)  # and the rename itself
    except Exception as e:  # noqa: BLE001 - writers (torch's zip writer) wrap the OSError in their own type
        cause = _os_error_in(e)
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # first, so that the error reports the space free without the partial file
        error = write_error(path, cause, size_hint) if cause is not None else None
        if error is None:
            raise
        raise error from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fsync(path, folder: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if folder else 0))
    try:
        os.fsync(fd)
    except OSError as e:
        if not folder or e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise  # (some filesystems cannot flush a folder; the file itself is on the disk)
    finally:
        os.close(fd)


def open_in_place(path: str | os.PathLike, flags: int, mode: int = 0o666) -> int:
    """os.open for a file that is written in place (a run folder's lock and log): a symbolic link
    there is refused, not followed (a planted link would send the write to the file it points to),
    and so is anything but a regular file (a FIFO would block). InputError naming the file."""
    path = Path(path)
    try:
        fd = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0), mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError(f"{path}: is a symbolic link; splat does not follow links here (remove it)") from None
        if e.errno == errno.ENXIO:  # a FIFO without a reader
            raise InputError(f"{path}: not a regular file (remove it)") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(f"{path}: not a regular file (remove it)")
    return fd


def _os_error_in(e: BaseException | None) -> OSError | None:
    """The OSError with an errno that `e` is, or that it was raised while handling."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, OSError) and e.errno is not None:
            return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def read_json_object(path: str | os.PathLike, error=None) -> dict:
    """A JSON file whose top level is an object. Accepts a UTF-8 byte-order mark; missing,
    malformed, non-UTF-8 or absurdly nested files raise `error` (InputError) naming the file."""
    import json

    error = error or InputError
    path = Path(path)
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except FileNotFoundError:
        raise error(f"{path}: file is missing") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a JSON file") from None
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: malformed JSON ({e})") from None
    except RecursionError:
        raise error(f"{path}: malformed JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object at the top level")
    return data


def encode_image(image, extension: str = ".png") -> bytes:
    """An (H, W, 3|4|1) float image in [0, 1] (tensor or array) as 8-bit PNG/JPEG bytes."""
    import imageio.v3 as iio

    arr = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return iio.imwrite("<bytes>", arr, extension=extension)


def write_image(path: str | os.PathLike, image) -> None:
    """Write an (H, W, 3|4|1) float image in [0, 1] (tensor or array) as 8-bit PNG/JPEG, atomically."""
    data = encode_image(image, Path(path).suffix)
    with atomic_path(path, len(data)) as tmp:
        tmp.write_bytes(data)


# ----------------------------------------------------------------------------------------------
# checkpoints: untrusted files never run code

# Types a splat checkpoint may hold besides tensors, containers and numbers (torch's weights-only
# unpickler admits those by default): nothing else is rebuilt from a file.
CHECKPOINT_GLOBALS: list = []


class DamagedCheckpointError(InputError):
    """A checkpoint file that cannot be read at all (empty, truncated, not a zip archive)."""


def load_weights_only(path: str | os.PathLike, what: str = "checkpoint"):
    """torch.load with the weights-only unpickler: a file that asks for any other code or type (a
    crafted pickle) is refused with an InputError, not run."""
    import re

    import torch

    path = Path(path)
    try:
        with torch.serialization.safe_globals(CHECKPOINT_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what}") from None
    except Exception as e:  # noqa: BLE001 - torch raises many types for damaged or hostile files
        text = " ".join(str(e).split())
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text) or re.search(r"Unsupported operand (\S+)", text)
        if found or "Weights only load failed" in text:
            kind = found.group(1) if found else "a type outside the allow-list"
            raise InputError(
                f"{path}: refused: the {what} asks to run or build {kind}, which a splat "
                "checkpoint never does (an untrusted or foreign file?)"
            ) from None
        raise DamagedCheckpointError(f"{path}: unreadable {what} ({e.__class__.__name__}: {text[:200]})") from None
