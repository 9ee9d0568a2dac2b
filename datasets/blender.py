"""Blender / NeRF-synthetic (and D-NeRF) scenes: `transforms_{train,val,test}.json`.

`camera_angle_x` gives the focal length (0.5 W / tan(angle / 2)); `frames[].file_path` has no
extension (".png" is appended when the path has none); `transform_matrix` is camera-to-world with
OpenGL axes. D-NeRF adds a per-frame `time` in [0, 1]. Images are RGBA, composited on the
dataset's background colour when loaded. `transforms_val.json`, when present, is the "val" split
(held out and scored apart from test; D-NeRF's lego test split disagrees with its train split).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from splat.camera import Camera
from splat.io_utils import read_json_object

from .base import DatasetError, Frame, LoadedScene, intrinsic_matrix, viewmat_from_c2w_opengl
from .checks import check_intrinsics, inside, optional_time, relative_path
from .images import image_size


def read_json(path: Path) -> dict:
    return read_json_object(path, DatasetError)


def resolve_image(root: Path, file_path: str, where: str = "", default_ext: str = ".png") -> Path:
    """The image a frame's `file_path` names, inside `root` (".png" appended when it has no extension)."""
    p = inside(root, file_path, where or str(root), "file_path")
    if p.suffix == "":
        p = p.with_suffix(default_ext)
    return p


def load_blender(root: Path) -> LoadedScene:
    frames = []
    size_cache: dict[Path, tuple[int, int]] = {}
    for split_name, split in (("train", "train"), ("val", "val"), ("test", "test")):
        path = root / f"transforms_{split_name}.json"
        if not path.exists():
            if split_name == "train":
                raise DatasetError(f"{path}: file is missing")
            continue
        meta = read_json(path)
        if "camera_angle_x" not in meta or not isinstance(meta.get("frames"), list):
            raise DatasetError(f"{path}: expected 'camera_angle_x' and a 'frames' list")
        try:
            angle = float(meta["camera_angle_x"])
        except (TypeError, ValueError):
            raise DatasetError(f"{path}: camera_angle_x is not a number") from None
        if not (0 < angle < math.pi):
            raise DatasetError(f"{path}: camera_angle_x {angle} is not an angle in (0, pi)")
        for k, fr in enumerate(meta["frames"]):
            where = f"{path} (frame {k})"
            if not isinstance(fr, dict):
                raise DatasetError(f"{where}: needs 'file_path' and a 4x4 'transform_matrix'")
            image_path = resolve_image(root, relative_path(fr, "file_path", where, required=True), where)
            try:
                c2w = np.asarray(fr["transform_matrix"], dtype=np.float64)
            except (KeyError, TypeError, ValueError):
                raise DatasetError(f"{where}: needs 'file_path' and a 4x4 'transform_matrix'") from None
            if c2w.shape not in ((4, 4), (3, 4)) or not np.isfinite(c2w).all():
                raise DatasetError(f"{where}: transform_matrix contains NaN/Inf or is not 4x4")
            if image_path.parent not in size_cache:
                size_cache[image_path.parent] = image_size(image_path)  # one header per folder
            width, height = size_cache[image_path.parent]
            focal = 0.5 * width / math.tan(0.5 * angle)
            K = check_intrinsics(intrinsic_matrix(focal, focal, width / 2, height / 2), width, height, where)
            view = viewmat_from_c2w_opengl(c2w, where)
            time = optional_time(fr.get("time"), where)
            cam = Camera.from_opencv(view, K=K, width=width, height=height, time=time)
            frames.append(Frame(name=f"{split}/{image_path.name}", image_path=image_path, camera=cam, split=split))
    if not frames:
        raise DatasetError(f"{root}: no frames in transforms_train.json")
    return LoadedScene(frames)
