"""`load_dataset`: detect a dataset's format, read it with its loader (the `FORMAT_LOADERS`
registry), choose a downscale, check the camera path, and build the `SceneDataset`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

from .base import DatasetError, Frame, LoadedScene, natural_key
from .blender import load_blender
from .capture_path import check_capture_path
from .colmap import find_model_dir, load_colmap
from .frame_times import FILE_NAME as FRAME_TIMES
from .frame_times import attach_frame_times
from .llff import load_llff
from .multiview import load_multiview, looks_like_multiview
from .nerfstudio import load_nerfstudio
from .scene_dataset import SceneDataset


@dataclasses.dataclass(frozen=True)
class DatasetFormat:
    """A format: whether a folder holds it, and its loader, called as load(root, images_dir, test_every)."""

    detect: Callable[[Path], bool]
    load: Callable[[Path, Path, int], LoadedScene]
    images_n: bool = False  # reads images_N/ (pre-downscaled copies), so a downscale chooses the folder


# Detection tries them in this order (a multi-view folder is a transforms.json that lists cameras).
FORMAT_LOADERS: dict[str, DatasetFormat] = {
    "blender": DatasetFormat(
        lambda root: (root / "transforms_train.json").exists(),
        lambda root, images_dir, test_every: load_blender(root),
    ),
    "multiview": DatasetFormat(
        lambda root: (root / "transforms.json").exists() and looks_like_multiview(root),
        lambda root, images_dir, test_every: load_multiview(root),
    ),
    "nerfstudio": DatasetFormat(
        lambda root: (root / "transforms.json").exists(),
        lambda root, images_dir, test_every: load_nerfstudio(root, test_every=test_every),
    ),
    "llff": DatasetFormat(lambda root: (root / "poses_bounds.npy").exists(), load_llff, images_n=True),
    "colmap": DatasetFormat(lambda root: find_model_dir(root) is not None, load_colmap, images_n=True),
}
FORMATS = ("blender", "nerfstudio", "multiview", "colmap", "llff")  # FORMAT_LOADERS, in the order messages list them


def detect_format(root: str | Path) -> str:
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: no such directory")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    for name, fmt in FORMAT_LOADERS.items():
        if fmt.detect(root):
            return name
    raise DatasetError(
        f"{root}: unknown dataset format (expected transforms_train.json, transforms.json, "
        "poses_bounds.npy or a COLMAP sparse/0 model)"
    )


def _images_dir(root: Path, downscale: int) -> Path:
    """`images_N/` when it exists for the requested downscale, else `images/`. Cameras always
    describe the full-resolution images; the dataset scales them to the downscaled size."""
    if downscale > 1 and (root / f"images_{downscale}").is_dir():
        return root / f"images_{downscale}"
    return root / "images"


def _downscaled_folders(root: Path) -> list[int]:
    return sorted(
        int(p.name[7:]) for p in root.glob("images_*") if p.is_dir() and p.name[7:].isdigit() and int(p.name[7:]) > 1
    )


def _true_downscaled_folders(root: Path, frames: list[Frame]) -> list[int]:
    """The `images_N/` folders whose images are 1/N of their cameras' size (checked on the first
    image of each, matched to its frame by name where it can be): a folder holding anything else
    would be stretched, or shrunk twice."""
    from .images import image_size

    by_stem = {Path(f.name).stem: f.camera for f in frames}
    good = []
    for n in _downscaled_folders(root):
        files = sorted((p for p in (root / f"images_{n}").iterdir() if p.is_file()), key=lambda p: natural_key(p.name))
        if not files:
            continue
        cam = by_stem.get(files[0].stem, frames[0].camera)
        try:
            width, height = image_size(files[0])
        except DatasetError:
            continue
        if abs(width - cam.width / n) <= 1 and abs(height - cam.height / n) <= 1:
            good.append(n)
    return good


def auto_downscale(width: int, height: int, max_side: int, available: list[int] = ()) -> int:
    """The integer downscale that brings the longer image side to at most `max_side` pixels;
    the smallest pre-downscaled `images_N/` folder at least that large is preferred (LLFF
    captures ship images_4 / images_8 and a full-size folder that is slow to decode)."""
    need = max(1, math.ceil(max(width, height) / max_side))
    if need > 1:
        for n in sorted(available):
            if need <= n <= 2 * need:
                return n
    return need


def load_dataset(
    root: str | Path,
    format: str | None = None,
    downscale: int = 1,
    normalize: bool = True,
    background=(1.0, 1.0, 1.0),
    test_every: int = 8,
    cache_bytes: int = 4 << 30,
    max_side: int = 1600,
    repair_poses: bool = True,
    frame_times: bool = False,
) -> SceneDataset:
    """Load a posed-image scene. Raises DatasetError (one line naming the file) on bad input.

    downscale 0 chooses one: the longer image side is brought to at most `max_side` pixels
    (`SceneDataset.downscale` and `.notes` say what was chosen). `repair_poses`: undo a fold of
    the camera path (capture_path.py) when one is found; a jumping path is reported either way.
    `frame_times`: give the frames of a posed video their times from its `times.json`
    (frame_times.py), for a moving model; without it a video is a still scene."""
    root = Path(root)
    fmt = format or detect_format(root)
    if fmt not in FORMATS:
        raise DatasetError(f"{root}: unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if not isinstance(downscale, int) or downscale < 0:
        raise DatasetError(f"{root}: downscale must be a positive integer (or 0: automatic), got {downscale!r}")
    if not root.is_dir():
        raise DatasetError(f"{root}: no such directory")
    loader = FORMAT_LOADERS[fmt]
    notes: list[str] = []
    auto = downscale == 0
    if auto and loader.images_n and not (root / "images").is_dir() and _downscaled_folders(root):
        downscale = _downscaled_folders(root)[0]  # only pre-downscaled folders: start from the largest
    for _ in range(2):
        images_dir = _images_dir(root, max(downscale, 1))
        loaded = loader.load(root, images_dir, test_every)
        if not auto:
            break
        auto = False
        width = max(f.camera.width for f in loaded.frames)
        height = max(f.camera.height for f in loaded.frames)
        # only the formats whose loaders read images_N/ prefer it (nerfstudio and Blender name their files)
        folders = _true_downscaled_folders(root, loaded.frames) if loader.images_n else []
        chosen = max(downscale, auto_downscale(width, height, max_side, folders))
        if chosen > 1:
            notes.append(
                f"downscale {chosen} chosen automatically: {width}x{height} images, at most {max_side} px "
                f"a side on this device (--downscale 1 keeps the full size)"
            )
        if _images_dir(root, chosen) == images_dir or not loader.images_n:
            downscale = chosen
            break
        downscale = chosen  # read the images_N folder that matches instead
    frames, points, notes = loaded.frames, loaded.points, [*loaded.notes, *notes]
    if not any(f.camera.time is not None for f in frames):  # a dynamic scene's cameras need not walk
        frames, points, path_notes = check_capture_path(frames, points, loaded.observers, repair=repair_poses)
        notes += path_notes
        if frame_times:
            frames = attach_frame_times(root, frames)
        elif (root / FRAME_TIMES).is_file():
            notes.append(f"a video, trained as a still scene: --model 4d uses its {FRAME_TIMES} to train it moving")
    return SceneDataset(
        root,
        fmt,
        frames,
        points,
        downscale=max(downscale, 1),
        normalize=normalize,
        background=background,
        cache_bytes=cache_bytes,
        box=loaded.bounds,
        notes=tuple(notes),
    )
