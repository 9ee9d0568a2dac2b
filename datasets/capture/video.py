"""Frames from a video: decoded by imageio-ffmpeg (the ffmpeg binary imageio already ships), the
sharpest frame kept in each window of consecutive frames.

Why imageio-ffmpeg rather than PyAV: it is a dependency already (`imageio[ffmpeg]` writes
`splat render --video`), so reading video costs no new package (PyAV's wheels add ~100 MB), and
ffmpeg applies a phone's rotation metadata (the display matrix) while decoding, so portrait
videos come out portrait. ffmpeg also scales 4K frames down while decoding, which halves the time.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ..base import DatasetError

MAX_FRAME_SIDE = 1920  # longer side of the extracted frames: more than training uses (1600 px on CUDA)


def video_info(path: Path) -> dict:
    """{"width", "height" (as displayed: rotation applied), "fps", "frames" (estimated)}."""
    import imageio_ffmpeg

    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            meta = next(reader)
        reader.close()
    except (OSError, RuntimeError, StopIteration) as e:
        raise DatasetError(f"{path}: cannot read the video ({_reason(e)})") from None
    width, height = meta.get("size") or (0, 0)
    fps, duration = float(meta.get("fps") or 0.0), float(meta.get("duration") or 0.0)
    if width <= 0 or height <= 0:
        raise DatasetError(f"{path}: no video stream")
    return {"width": int(width), "height": int(height), "fps": fps, "frames": max(1, round(fps * duration))}


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image at about 480 px: blurred frames score low."""
    grey = rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    f = max(1, max(grey.shape) // 480)
    h, w = grey.shape[0] // f * f, grey.shape[1] // f * f
    grey = grey[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    lap = grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4.0 * grey[1:-1, 1:-1]
    return float(lap.var())


def output_size(width: int, height: int, max_side: int = MAX_FRAME_SIDE) -> tuple[int, int]:
    """Frame size after the downscale to `max_side` (even sizes, as video filters like)."""
    s = min(1.0, max_side / max(width, height))
    return max(2, int(round(width * s / 2)) * 2), max(2, int(round(height * s / 2)) * 2)


def sharpest_frames(
    path: Path, num_frames: int, progress: Callable[[int, int], None] | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """(frame number, RGB uint8 frame) of the sharpest frame in each of `num_frames` windows of
    consecutive frames (every frame when the video has fewer). One frame is held per window."""
    import imageio_ffmpeg

    info = video_info(path)
    width, height = output_size(info["width"], info["height"])
    total = info["frames"]
    windows = min(num_frames, total)
    scale = [] if (width, height) == (info["width"], info["height"]) else ["-vf", f"scale={width}:{height}"]
    best = None  # (score, number, frame) of the current window
    window = 0
    count = 0
    try:
        reader = imageio_ffmpeg.read_frames(str(path), output_params=scale)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            next(reader)
        for number, raw in enumerate(reader):
            frame = np.frombuffer(raw, dtype=np.uint8)
            if frame.size != width * height * 3:
                raise DatasetError(f"{path}: frame {number} has {frame.size} bytes, expected {width}x{height} RGB")
            frame = frame.reshape(height, width, 3)
            w = min(windows - 1, math.floor(number * windows / total))
            if w != window and best is not None:
                yield best[1], best[2]
                best = None
            window = w
            score = sharpness(frame)
            if best is None or score > best[0]:
                best = (score, number, frame.copy())
            count = number + 1
            if progress is not None:
                progress(min(count, total), total)
    except (OSError, RuntimeError) as e:
        raise DatasetError(f"{path}: cannot decode the video ({_reason(e)})") from None
    if best is not None:
        yield best[1], best[2]
    if count == 0:
        raise DatasetError(f"{path}: the video has no frames")


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:200] if text else e.__class__.__name__
