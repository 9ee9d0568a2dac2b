"""Photos or a video -> a posed COLMAP dataset (`splat process`, and `splat train` on such input).

    from splat.datasets.capture import process_capture
    result = process_capture("my_video.mp4", "outputs/my_video/data")   # -> images/, sparse/0/

The output is COLMAP's layout, read by `splat train`, nerfstudio and INRIA's trainer:
`images/` (photos under their own names, video frames as `frame_NNNNNN.jpg` by frame number),
`images_2/`, `images_4/`... (the same, downscaled) and `sparse/0/{cameras,images,points3D}.bin`;
for one video, `times.json` says when each frame was filmed (a moving model trains on it).
Work files (COLMAP's databases, logs, one marker per finished stage) live in `.process/`.

Four stages: frames (copy the photos, or pick the sharpest video frames), features, matching,
mapping. A stage writes under temporary names and renames when it is complete, then records
itself in `.process/STAGE.json` with the settings it ran with; run the same command again after
Ctrl-C or a crash and finished stages are skipped, an unfinished one starts over.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from ..base import DatasetError
from ..frame_times import FILE_NAME as FRAME_TIMES
from . import sfm
from .frames import write_frames, write_video_times
from .inputs import Capture, find_capture, is_capture

__all__ = ["ProcessResult", "default_output", "find_capture", "is_capture", "plan_text", "process_capture"]
STAGES = ("frames", "features", "matching", "mapping")
DEFAULT_NUM_FRAMES = 300


@dataclasses.dataclass
class ProcessResult:
    data: Path
    images: int  # images given to structure from motion
    registered: list[str]
    unregistered: list[str]
    matcher: str
    seconds: dict  # per stage; 0 for a stage found finished

    def summary(self) -> str:
        text = f"registered {len(self.registered)} of {self.images} images"
        if self.unregistered:
            shown = ", ".join(self.unregistered[:10]) + (", ..." if len(self.unregistered) > 10 else "")
            text += f"; not placed: {shown}"
        return text


def default_output(input_path: str | Path) -> Path:
    """Where `splat train INPUT` keeps the poses of INPUT: outputs/<name>/data, beside its runs."""
    p = Path(input_path).resolve()
    name = p.stem if p.is_file() else (p.parent.name if p.name in ("images", "photos", "frames") else p.name)
    return Path("outputs") / name / "data"


# Seconds on a 2-core CPU (bench/results/process-cpu.json), for images of at most about 1 MP after
# the SIFT downscale (beer: ~2k features each) and of 1.5 MP and more (Strecha: up to SIFT's 8k
# features each, which makes every pair ~20x dearer to match), linear in between: per image
# features + mapping, per pair matching.
SECONDS_PER_IMAGE = (1.5 + 0.2, 7.0 + 3.5)
SECONDS_PER_PAIR = (0.05, 1.2)


def plan_text(capture: Capture, num_frames: int = DEFAULT_NUM_FRAMES) -> str:
    """What processing will do and roughly how long it takes on this machine."""
    from .frames import frame_plan

    n, width, height, decoded = frame_plan(capture, num_frames)
    side = min(sfm.MAX_FEATURE_SIDE, max(width, height))
    megapixels = width * height * (side / max(width, height)) ** 2 / 1e6
    pairs = min(n * (n - 1) // 2, n * (sfm.SEQUENTIAL_OVERLAP + sfm.LOOP_NEIGHBOURS // 2))  # a walk's
    matcher = "sequential matching, loops by position (every pair if the names are not in capture order)"
    threads = sfm._threads()
    seconds = (2.0 / threads) * sum(
        count * (small + (large - small) * min(max((megapixels - 1.0) / 0.5, 0.0), 1.0))
        for count, (small, large) in ((n, SECONDS_PER_IMAGE), (pairs, SECONDS_PER_PAIR))
    )
    seconds += 0.02 * decoded  # video: every frame is decoded
    what = f"{n} frames of {capture.describe()}" if capture.videos else capture.describe()
    return (
        f"pose {what} ({width}x{height}): SIFT at {side} px, {matcher}, ~{pairs:,} pairs, "
        f"incremental mapping; about {max(1, round(seconds / 60))} min on {threads} CPU threads"
    )


def process_capture(
    input_path: str | Path,
    out: str | Path,
    num_frames: int = DEFAULT_NUM_FRAMES,
    quiet: bool = False,
    capture: Capture | None = None,
) -> ProcessResult:
    """Pose photos or video frames with structure from motion into a COLMAP dataset at `out`.

    `capture`: `find_capture(input_path)` when the caller has it already. Raises DatasetError
    (one line) for bad input, or when fewer than 3 images, or under half of
    them, could be placed."""
    from splat.progress import stage_bar

    capture = capture or find_capture(input_path)
    out = Path(out)
    if num_frames < 3:
        raise DatasetError(f"--num-frames must be at least 3, got {num_frames}")
    work = out / ".process"
    _check_output(out, input_path)
    work.mkdir(parents=True, exist_ok=True)
    sfm.quiet_logs(work / "logs")
    seconds = {}

    # each stage: its settings (with the previous stage's) decide whether its finished output holds
    key = {"input": str(Path(input_path).resolve()), "files": capture.fingerprint(), "num_frames": num_frames}
    t = time.perf_counter()
    frames = _finished(work, "frames", key)
    if frames is None:
        _clear(out, work, "frames")
        frames = write_frames(capture, out, num_frames, stage_bar, quiet)
        _finish(work, "frames", key, frames)
    seconds["frames"] = time.perf_counter() - t
    names = [n for group in frames["groups"] for n in group]
    if len(capture.videos) == 1 and not (out / FRAME_TIMES).is_file():
        write_video_times(capture.videos[0], out, names)

    key = {"frames": _digest(frames), "max_side": sfm.MAX_FEATURE_SIDE}
    t = time.perf_counter()
    if _finished(work, "features", key) is None:
        _clear(out, work, "features")
        tmp = work / "features.db.tmp"
        tmp.unlink(missing_ok=True)  # an interrupted extraction starts over
        with stage_bar("features", len(names), "images", quiet) as update:
            sfm.extract_features(tmp, out / "images", frames["groups"], progress=update)
        os.replace(tmp, work / "features.db")
        _finish(work, "features", key, {})
    seconds["features"] = time.perf_counter() - t

    key = {"features": key, "exhaustive_max": sfm.EXHAUSTIVE_MAX, "overlap": sfm.SEQUENTIAL_OVERLAP, "loops": 1}
    t = time.perf_counter()
    matching = _finished(work, "matching", key)
    if matching is None:
        _clear(out, work, "matching")
        tmp = work / "matches.db.tmp"
        shutil.copyfile(work / "features.db", tmp)
        with stage_bar("matching", len(names) * sfm.SEQUENTIAL_OVERLAP, "pairs", quiet) as update:
            how = sfm.match_capture(tmp, out / "images", names, work, progress=update)
        os.replace(tmp, work / "matches.db")
        matching = {"matcher": how}
        _finish(work, "matching", key, matching)
    seconds["matching"] = time.perf_counter() - t

    key = {"matching": key, "principal_point_gain": sfm.PRINCIPAL_POINT_GAIN, "outliers": sfm.OUTLIER_FACTOR}
    t = time.perf_counter()
    mapped = _finished(work, "mapping", key)
    if mapped is None:
        _clear(out, work, "mapping")
        models = work / "models.tmp"
        shutil.rmtree(models, ignore_errors=True)
        models.mkdir()
        with stage_bar("mapping", len(names), "images", quiet) as update:
            model = sfm.map_images(work / "matches.db", out / "images", models, len(names), progress=update)
        registered = [] if model is None else sorted(img.name for img in model.images.values() if img.has_pose)
        mapped = {"registered": registered}
        _check_registered(capture, names, registered)
        tmp = out / "sparse" / "0.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        model.write(tmp)
        os.replace(tmp, out / "sparse" / "0")
        shutil.rmtree(models, ignore_errors=True)
        _finish(work, "mapping", key, mapped)
    seconds["mapping"] = time.perf_counter() - t

    placed = set(mapped["registered"])
    return ProcessResult(
        data=out,
        images=len(names),
        registered=mapped["registered"],
        unregistered=[n for n in names if n not in placed],
        matcher=matching["matcher"],
        seconds=seconds,
    )


def _check_registered(capture: Capture, names: list[str], registered: list[str]) -> None:
    if len(registered) >= 3 and 2 * len(registered) >= len(names):
        return
    advice = (
        "keep the frame order and move slowly, with fewer blurred frames"
        if capture.videos
        else "take photos with more overlap (each part of the scene in 3+ photos, moving a step between shots)"
    )
    raise DatasetError(
        f"{capture.root}: structure from motion placed only {len(registered)} of {len(names)} images; {advice}"
    )


def _check_output(out: Path, input_path: str | Path) -> None:
    """`out` is new, or holds an earlier processing of this same input."""
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / ".process").is_dir():
        raise DatasetError(f"{out}: not empty and not made by splat process; choose another --out")
    try:
        previous = json.loads((out / ".process" / "frames.json").read_text())["key"]["input"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # nothing finished there yet (or an unreadable record: the stage is redone)
    if previous != str(Path(input_path).resolve()):
        raise DatasetError(f"{out}: holds the poses of {previous}; choose another --out (or remove it)")


def _digest(value) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def _finished(work: Path, stage: str, key: dict) -> dict | None:
    """The record of a finished stage run with these settings, else None."""
    try:
        record = json.loads((work / f"{stage}.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("key") != json.loads(json.dumps(key)):
        return None
    return record.get("result")


def _finish(work: Path, stage: str, key: dict, result: dict) -> None:
    from splat.io_utils import atomic_path

    with atomic_path(work / f"{stage}.json") as tmp:
        tmp.write_text(json.dumps({"key": key, "result": result}, indent=1) + "\n")


def _clear(out: Path, work: Path, stage: str) -> None:
    """Forget `stage` and every stage after it (their markers first, then their outputs)."""
    later = STAGES[STAGES.index(stage) :]
    for s in later:
        (work / f"{s}.json").unlink(missing_ok=True)
    if "frames" in later:
        (out / FRAME_TIMES).unlink(missing_ok=True)
        for folder in out.glob("images*"):
            shutil.rmtree(folder, ignore_errors=True)
    if "features" in later:
        (work / "features.db").unlink(missing_ok=True)
    if "matching" in later:
        (work / "matches.db").unlink(missing_ok=True)
    if "mapping" in later:
        shutil.rmtree(out / "sparse", ignore_errors=True)
