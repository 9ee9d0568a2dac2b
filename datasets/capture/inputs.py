"""What a capture folder holds: photos, videos, or neither (one-line errors naming the file).

`find_capture(path)` sorts a path into photos (a folder of images, in natural name order),
videos (one video file, or a folder of them) or an error; files that are neither are skipped
and counted. Photos are checked here (decodable, at least two sizes of baseline) so that a bad
file stops processing before structure from motion spends minutes on it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from ..base import DatasetError, natural_key

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mts", ".3gp")
EXIF_ORIENTATION = 0x0112


@dataclasses.dataclass
class Capture:
    """The input of `splat process`: photos or videos (exactly one list is non-empty)."""

    root: Path
    photos: list[Path]
    videos: list[Path]
    skipped: int = 0  # files that are neither images nor videos

    @property
    def kind(self) -> str:
        return "video" if self.videos else "photos"

    def describe(self) -> str:
        if self.videos:
            what = self.videos[0].name if len(self.videos) == 1 else f"{len(self.videos)} videos"
        else:
            what = f"{len(self.photos)} photos"
        skipped = f" ({self.skipped} other file(s) skipped)" if self.skipped else ""
        return what + skipped

    def fingerprint(self) -> list:
        """What identifies the input: each file's name, size and modification time."""
        out = []
        for p in self.photos + self.videos:
            st = p.stat()
            out.append([p.name, st.st_size, st.st_mtime_ns])
        return out


def is_capture(path: str | Path) -> bool:
    """True for input that `splat process` poses: a video file, or a folder of photos or videos
    with no poses of its own (no transforms*.json, poses_bounds.npy or COLMAP model)."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() in VIDEO_SUFFIXES
    if not path.is_dir():
        return False
    posed = ("transforms.json", "transforms_train.json", "poses_bounds.npy", "sparse", "cameras.bin", "cameras.txt")
    if any((path / name).exists() for name in posed):
        return False
    return any(_kind(p) is not None for p in _files(path))


def find_capture(path: str | Path) -> Capture:
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise DatasetError(
                f"{path}: not a video ({', '.join(VIDEO_SUFFIXES)}); give a video file or a folder of photos"
            )
        return Capture(path.parent, [], [path])
    files = _files(path)
    photos = [p for p in files if _kind(p) == "image"]
    videos = [p for p in files if _kind(p) == "video"]
    skipped = len(files) - len(photos) - len(videos)
    if not photos and not videos:
        other = f" ({skipped} other file(s): not {', '.join(IMAGE_SUFFIXES)} images)" if skipped else ""
        raise DatasetError(f"{path}: no photos or videos to process{other}")
    if photos and videos:
        raise DatasetError(
            f"{path}: holds both photos ({len(photos)}) and videos ({len(videos)}); process them as separate folders"
        )
    if photos:
        _check_photos(path, photos)
    return Capture(path, photos, videos, skipped)


def _files(folder: Path) -> list[Path]:
    try:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file()]
    except OSError as e:
        raise DatasetError(f"{folder}: cannot list the folder ({e.strerror})") from None
    return sorted(entries, key=lambda p: natural_key(p.name))


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else None


def _check_photos(folder: Path, photos: list[Path]) -> None:
    """Photos structure from motion can use: at least 3, and not one picture repeated."""
    if len(photos) < 3:
        raise DatasetError(f"{folder}: {len(photos)} photo(s); structure from motion needs at least 3 (ideally 20+)")
    digests = {hashlib.sha1(p.read_bytes()).digest() for p in photos}
    if len(digests) < 3:
        raise DatasetError(
            f"{folder}: the {len(photos)} photos are copies of {len(digests)} picture(s); "
            "take photos from different positions around the subject"
        )


def photo_camera_key(path: Path, width: int, height: int, exif) -> tuple:
    """Photos that share a camera (one set of intrinsics): the same size, maker, model and focal
    length as EXIF tells (a phone's main and wide lenses, or a zoom, get separate cameras)."""
    make = str(exif.get(0x010F, "")).strip()
    model = str(exif.get(0x0110, "")).strip()
    focal = exif.get_ifd(0x8769).get(0x920A, "") if hasattr(exif, "get_ifd") else ""
    return (width, height, make, model, str(focal))
