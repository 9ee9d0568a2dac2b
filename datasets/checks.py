"""Checks of values read from dataset files: each failure is a DatasetError naming the file."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from splat.camera import MAX_SIDE  # larger than any camera's sensor (and JPEG's limit)

from .base import DatasetError

BYTES_PER_PIXEL = 16  # an RGB float32 image plus its uint8 copy and mask, roughly, when loaded


def relative_path(entry: dict, key: str, where: str, required: bool = False) -> str | None:
    """A file path given as a string in `entry[key]` (None when absent and not required)."""
    value = entry.get(key)
    if value is None or value == "":
        if required:
            raise DatasetError(f"{where}: needs '{key}'")
        return None
    if not isinstance(value, str):
        raise DatasetError(
            f"{where}: '{key}' must be a file path (a string), got {type(value).__name__} {str(value)[:40]}"
        )
    return value


def inside(root: Path, value: str, where: str, key: str) -> Path:
    """`root / value` for a path read from a dataset file, refused unless it names something inside
    `root`: no absolute path and no '..'. A dataset someone sends you could otherwise make training
    read any image you can read, copy it into renders/ beside each render and bake it into the
    model. (Symbolic links inside the dataset are followed: they are the owner's choice.)"""
    p = Path(value)
    if p.is_absolute() or ".." in p.parts:
        raise DatasetError(
            f"{where}: '{key}' {value!r} is not a path inside {root} (a dataset reads only its own files: "
            "absolute paths and '..' are refused)"
        )
    return root / p


def dataset_path(entry: dict, key: str, root: Path, where: str, required: bool = False) -> Path | None:
    """`relative_path`'s string, confined to `root` (`inside`)."""
    value = relative_path(entry, key, where, required)
    return None if value is None else inside(root, value, where, key)


def optional_time(value, where: str) -> float | None:
    """A frame's `time`: a finite number (None when absent)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DatasetError(f"{where}: 'time' must be a finite number, got {str(value)[:40]!r}")
    return float(value)


def name_list(value, where: str, key: str) -> list[str]:
    """A list of file names (e.g. nerfstudio's `test_filenames`)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DatasetError(f"{where}: '{key}' must be a list of file names, got {str(value)[:40]}")
    return value


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_image_size(width, height, where: str) -> None:
    """Refuse declared image sizes that are not positive or could never be held in memory (a
    width of 10^7 in a camera file would otherwise be allocated when the image is resized)."""
    if width <= 0 or height <= 0:
        raise DatasetError(f"{where}: invalid image size {width}x{height}")
    memory = _memory_bytes()
    if width > MAX_SIDE or height > MAX_SIDE or (memory and width * height * BYTES_PER_PIXEL > memory):
        raise DatasetError(
            f"{where}: image size {width}x{height} is too large to load (at most {MAX_SIDE} pixels a side"
            f"{f' and {memory / 2**30:.0f} GiB of memory' if memory else ''})"
        )


def check_intrinsics(K: np.ndarray, width: int, height: int, where: str) -> np.ndarray:
    """Finite, positive focal lengths and an image size that can be held in memory."""
    K = np.asarray(K, dtype=np.float64)
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise DatasetError(f"{where}: invalid intrinsics (focal lengths must be finite and positive)")
    check_image_size(width, height, where)
    return K
