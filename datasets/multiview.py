"""Multi-view video folders (synchronised fixed cameras filming a dynamic scene, as N3V).

    root/transforms.json      {"fps": 30,                                  (optional, informational)
                               "cameras": [{"name": "cam00",
                                            "transform_matrix": [[...]],  camera-to-world, OpenGL axes
                                            "fl_x": ..., "fl_y": ..., "cx": ..., "cy": ..., "w": ..., "h": ...},
                                           ...]}
    root/cam00/000000.png     one folder per camera, named by "name": its frames in time order
    root/cam00/000001.png     (.png / .jpg / .jpeg, sorted by name, numerically when all digits)
    root/cam01/...

Intrinsics follow nerfstudio's keys (`camera_model` PINHOLE / OPENCV / OPENCV_FISHEYE with their
distortion coefficients; set once at the top level or per camera; `w` and `h` default to the
image size). `ply_file_path` optionally gives initial points. Every camera must hold the same
frames; frame i of n becomes one image whose camera has `time = i / (n - 1)` (0 for a single
frame). Split (the N3V convention): the first camera, cam00, is the held-out test view; the others
train.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from splat.camera import Camera

from .base import DatasetError, Frame, LoadedScene, viewmat_from_c2w_opengl
from .blender import read_json
from .checks import dataset_path, inside
from .nerfstudio import _intrinsics, _read_points_ply

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def looks_like_multiview(root: Path) -> bool:
    """transforms.json with a "cameras" list and no nerfstudio "frames", or with camera subfolders."""
    try:
        meta = read_json(root / "transforms.json")
    except DatasetError:
        return False  # left to the nerfstudio loader, which reports the problem
    cameras = meta.get("cameras")
    if not isinstance(cameras, list) or not cameras:
        return False
    if "frames" not in meta:
        return True
    return any(isinstance(c, dict) and isinstance(c.get("name"), str) and (root / c["name"]).is_dir() for c in cameras)


def _frame_key(stem: str):
    return (0, int(stem), stem) if stem.isdigit() else (1, 0, stem)


def _camera_images(folder: Path) -> dict[str, Path]:
    """{stem: path} of the images in one camera folder."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: camera folder is missing")
    images = {p.stem: p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
    if not images:
        raise DatasetError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) in the camera folder")
    return images


def load_multiview(root: Path) -> LoadedScene:
    path = root / "transforms.json"
    meta = read_json(path)
    entries = meta.get("cameras")
    if not isinstance(entries, list) or not entries:
        raise DatasetError(f"{path}: expected a non-empty 'cameras' list")
    if len(entries) < 2:
        raise DatasetError(f"{path}: needs at least 2 cameras (the first is held out for testing)")

    names, images = [], []
    for k, entry in enumerate(entries):
        where = f"{path} (camera {k})"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or "transform_matrix" not in entry:
            raise DatasetError(f"{where}: needs a 'name' and a 'transform_matrix'")
        name = entry["name"]
        if not name:
            raise DatasetError(f"{where}: 'name' is empty")
        inside(root, name, where, "name")
        if name in names:
            raise DatasetError(f"{where}: camera name {name!r} appears twice")
        names.append(name)
        images.append(_camera_images(root / name))

    # every camera must film the same frames: name the first file one of them lacks
    stems = sorted(set().union(*images), key=_frame_key)
    counts = [len(imgs) for imgs in images]
    for name, imgs, count in zip(names, images, counts):
        for stem in stems:
            if stem not in imgs:
                other = next(i for i in range(len(names)) if stem in images[i])
                missing = root / name / images[other][stem].name
                raise DatasetError(
                    f"{missing}: image file is missing ({name} has {count} frames, "
                    f"{names[other]} has {counts[other]}; every camera needs the same frames)"
                )

    n = len(stems)
    frames = []
    for k, (entry, name, imgs) in enumerate(zip(entries, names, images)):
        where = f"{path} (camera {name})"
        try:
            c2w = np.asarray(entry["transform_matrix"], dtype=np.float64)
        except (TypeError, ValueError):
            raise DatasetError(f"{where}: transform_matrix is not a matrix of numbers") from None
        if c2w.shape not in ((4, 4), (3, 4)) or not np.isfinite(c2w).all():
            raise DatasetError(f"{where}: transform_matrix contains NaN/Inf or is not 4x4")
        view = viewmat_from_c2w_opengl(c2w, where)
        K, w, h, lens, dist = _intrinsics(entry, meta, where, imgs[stems[0]])
        for i, stem in enumerate(stems):
            time = i / (n - 1) if n > 1 else 0.0
            cam = Camera.from_opencv(view, K=K, width=w, height=h, lens=lens, distortion=dist, time=time)
            frames.append(
                Frame(
                    name=f"{name}/{imgs[stem].name}",
                    image_path=imgs[stem],
                    camera=cam,
                    split="test" if k == 0 else "train",
                )
            )
    ply_path = dataset_path(meta, "ply_file_path", root, str(path))
    points = _read_points_ply(ply_path) if ply_path else None
    return LoadedScene(frames, points)
