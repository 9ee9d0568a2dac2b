"""The first stage of `splat process`: the images structure from motion will see.

Photos are copied under their own names (byte for byte, unless EXIF says to rotate them: then
they are turned upright, so every later reader sees the same pixels); video frames are the
sharpest of each window (video.py), named by frame number. `images_N/` folders hold the same
images downscaled by N (box filter, the size the loaders expect: round(W / N)).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..base import DatasetError
from ..frame_times import write_frame_times
from .inputs import EXIF_ORIENTATION, Capture, photo_camera_key
from .video import output_size, sharpest_frames, video_info

MIN_DOWNSCALED_SIDE = 150  # images_N/ is made while its longer side keeps at least this many pixels


def frame_plan(capture: Capture, num_frames: int) -> tuple[int, int, int, int]:
    """(number of images, width, height of the first) that the frames stage will produce, and the
    number of video frames it decodes to choose them (0 for photos)."""
    if capture.videos:
        infos = [video_info(v) for v in capture.videos]
        total = sum(i["frames"] for i in infos)
        width, height = output_size(infos[0]["width"], infos[0]["height"])
        return min(num_frames, total), width, height, total
    width, height = _upright_size(capture.photos[0])
    return len(capture.photos), width, height, 0


def write_frames(capture: Capture, out: Path, num_frames: int, stage_bar, quiet: bool) -> dict:
    """Write images/ and images_N/ under `out`; {"groups": [[image names sharing a camera]...],
    "factors": [N...]}."""
    staging = out / "images.tmp"
    for folder in out.glob("images*.tmp"):
        shutil.rmtree(folder)
    staging.mkdir(parents=True)
    if capture.videos:
        groups = _video_frames(capture, staging, num_frames, stage_bar, quiet)
    else:
        groups = _photos(capture, staging, stage_bar, quiet)
    names = [n for g in groups for n in g]
    longest = max(max(_image_size(staging / n)) for n in names[:1] + names[-1:])
    factors = [f for f in (2, 4, 8) if longest / f >= MIN_DOWNSCALED_SIDE]
    with stage_bar("downscale", len(names), "images", quiet) as update:
        for k, name in enumerate(names):
            _write_downscaled(staging / name, out, name, factors)
            update(k + 1)
    for f in factors:
        os.replace(out / f"images_{f}.tmp", out / f"images_{f}")
    os.replace(staging, out / "images")
    return {"groups": groups, "factors": factors}


def _photos(capture: Capture, staging: Path, stage_bar, quiet: bool) -> list[list[str]]:
    from PIL import Image, ImageOps

    groups: dict[tuple, list[str]] = {}
    with stage_bar("photos", len(capture.photos), "images", quiet) as update:
        for k, path in enumerate(capture.photos):
            try:
                with Image.open(path) as im:
                    im.load()  # decode fully: a truncated or corrupt photo is named now
                    exif = im.getexif()
                    orientation = exif.get(EXIF_ORIENTATION, 1)
                    if orientation in (1, None):
                        shutil.copyfile(path, staging / path.name)
                        size = im.size
                    else:
                        upright = ImageOps.exif_transpose(im)
                        exif[EXIF_ORIENTATION] = 1
                        _save(upright, staging / path.name, exif)
                        size = upright.size
            except (OSError, ValueError, Image.DecompressionBombError) as e:
                raise DatasetError(f"{path}: cannot decode the photo ({' '.join(str(e).split())[:160]})") from None
            groups.setdefault(photo_camera_key(path, *size, exif), []).append(path.name)
            update(k + 1)
    return list(groups.values())


def _video_frames(capture: Capture, staging: Path, num_frames: int, stage_bar, quiet: bool) -> list[list[str]]:
    from PIL import Image

    infos = [video_info(v) for v in capture.videos]
    total = sum(i["frames"] for i in infos)
    groups = []
    done = 0
    with stage_bar("decode", total, "frames", quiet) as update:
        for video, info in zip(capture.videos, infos):
            share = max(3, round(num_frames * info["frames"] / total))
            folder = "" if len(capture.videos) == 1 else f"{video.stem}/"
            (staging / folder).mkdir(exist_ok=True)
            names = []
            for number, frame in sharpest_frames(video, share, lambda d, t, base=done: update(base + d)):
                name = f"{folder}frame_{number:06d}.jpg"
                Image.fromarray(frame).save(staging / name, quality=95)
                names.append(name)
            done += info["frames"]
            if len(names) < 3:
                raise DatasetError(f"{video}: {len(names)} frame(s); structure from motion needs at least 3")
            groups.append(names)  # one camera per video
    return groups


def write_video_times(video: Path, out: Path, names: list[str]) -> None:
    """`out/times.json`: the seconds at which each kept frame (`frame_NNNNNN.jpg`, by frame number)
    was filmed, at the video's frame rate (frame numbers where the video does not say its rate)."""
    fps = video_info(video)["fps"]
    numbers = {name: int(Path(name).stem.rsplit("_", 1)[-1]) for name in names}
    if fps > 0:
        write_frame_times(out, {name: n / fps for name, n in numbers.items()})
    else:
        write_frame_times(out, {name: float(n) for name, n in numbers.items()}, unit="frames")


def _save(image, path: Path, exif=None) -> None:
    kwargs = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    if exif is not None and path.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff"):
        kwargs["exif"] = exif
    image.save(path, **kwargs)


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def _upright_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            width, height = im.size
            turned = im.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: cannot read the photo ({' '.join(str(e).split())[:160]})") from None
    return (height, width) if turned else (width, height)


def _write_downscaled(source: Path, out: Path, name: str, factors: list[int]) -> None:
    from PIL import Image

    if not factors:
        return
    with Image.open(source) as im:
        im = im.convert("RGB") if im.mode not in ("RGB", "RGBA", "L") else im
        width, height = im.size
        for f in factors:
            target = out / f"images_{f}.tmp" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            small = im.resize((max(1, round(width / f)), max(1, round(height / f))), Image.Resampling.BOX)
            _save(small, target)
