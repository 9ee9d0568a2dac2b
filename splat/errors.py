"""Which exceptions are the user's input problems (one-line CLI errors) rather than bugs."""

from __future__ import annotations


def is_user_error(e: BaseException) -> bool:
    """Bad data, bad files and bad arguments: DatasetError, PlyError, RunError (ValueErrors that name
    the file or argument), TrainingError, and OS errors such as a missing or unwritable path."""
    from splat.train.trainer import TrainingError

    return isinstance(e, (ValueError, OSError, TrainingError))
