"""When each frame of a posed video was filmed: `times.json` beside a COLMAP dataset.

`splat process` (and `splat train` on a video) writes it for a capture of one video:

    {"unit": "seconds", "frames": {"frame_000123.jpg": 4.1, ...}}   from the start of the video

A video of a still scene ignores it. When the run asks for a moving model (`--model motion` or
`--model 4d`), the loader gives each frame its time, normalised to [0, 1] over the frames listed
(first frame 0, last 1), and the scene trains as a dynamic one filmed by a single camera.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from splat.io_utils import atomic_path, read_json_object

from .base import DatasetError, Frame

FILE_NAME = "times.json"


def write_frame_times(out: Path, times: dict[str, float], unit: str = "seconds") -> None:
    """Write `out/times.json` (atomically): image name -> time from the video's start, in `unit`
    (only the ratios matter to the loader)."""
    import json

    with atomic_path(Path(out) / FILE_NAME) as tmp:
        tmp.write_text(json.dumps({"unit": unit, "frames": times}, indent=1) + "\n")


def read_frame_times(path: Path) -> dict[str, float]:
    """image name -> seconds, from a `times.json`; DatasetError naming the file when it is not one."""
    data = read_json_object(path, DatasetError)
    frames = data.get("frames")
    if not isinstance(frames, dict) or not frames:
        raise DatasetError(f"{path}: expected 'frames', an object of image name -> seconds")
    times = {}
    for name, value in frames.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise DatasetError(f"{path}: the time of {str(name)[:80]!r} is not a finite number ({str(value)[:40]})")
        times[name] = float(value)
    return times


def attach_frame_times(root: Path, frames: list[Frame]) -> list[Frame]:
    """The frames with their normalised times from `root/times.json`, or unchanged when there is
    no such file. Every frame must be listed, and the times must span an interval."""
    path = Path(root) / FILE_NAME
    if not path.is_file():
        return frames
    seconds = read_frame_times(path)
    missing = [f.name for f in frames if f.name not in seconds]
    if missing:
        raise DatasetError(f"{path}: no time for {len(missing)} image(s), e.g. {missing[0]}")
    first, last = min(seconds.values()), max(seconds.values())
    if not last > first:
        raise DatasetError(f"{path}: every frame has the same time; a moving scene needs frames over time")
    return [
        dataclasses.replace(f, camera=dataclasses.replace(f.camera, time=(seconds[f.name] - first) / (last - first)))
        for f in frames
    ]
