"""LLFF scenes: `poses_bounds.npy` (N x 17) + `images/` (or `images_N/` downscales).

Each row is a 3x5 matrix [R | t | (h, w, f)] flattened, then the near and far depth of the
content that image sees (kept on the frame: they place the random initialisation). The rotation columns
are in (down, right, back) order: camera-to-world OpenGL = [m[:,1], -m[:,0], m[:,2]]. (h, w, f)
describe the full-resolution images; `images_N/` downscales are matched by the dataset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from splat.camera import Camera

from .base import (
    DatasetError,
    Frame,
    LoadedScene,
    every_nth_test_split,
    intrinsic_matrix,
    viewmat_from_c2w_opengl,
)
from .checks import check_intrinsics

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG"}


def load_llff(root: Path, images_dir: Path, test_every: int = 8) -> LoadedScene:
    path = root / "poses_bounds.npy"
    arr = read_poses_bounds(path)
    if not np.isfinite(arr).all():
        raise DatasetError(f"{path}: contains NaN/Inf")
    images = sorted(p for p in images_dir.iterdir() if p.suffix in IMAGE_SUFFIXES) if images_dir.is_dir() else []
    if len(images) != arr.shape[0]:
        raise DatasetError(f"{images_dir}: {len(images)} images for {arr.shape[0]} poses in {path.name}")
    poses = arr[:, :15].reshape(-1, 3, 5)
    split = every_nth_test_split([p.name for p in images], test_every)
    frames = []
    for k, (m, image, part) in enumerate(zip(poses, images, split)):
        where = f"{path} (row {k})"
        h, w, f = m[:, 4]
        width, height = int(round(w)), int(round(h))
        c2w = np.concatenate([m[:, 1:2], -m[:, 0:1], m[:, 2:3], m[:, 3:4]], axis=1)
        K = check_intrinsics(intrinsic_matrix(f, f, w / 2, h / 2), width, height, where)
        cam = Camera.from_opencv(viewmat_from_c2w_opengl(c2w, where), K=K, width=width, height=height)
        near, far = float(arr[k, 15]), float(arr[k, 16])
        bounds = (near, far) if 0 < near < far else (None, None)  # some tools write zeros: no bounds
        frames.append(Frame(name=image.name, image_path=image, camera=cam, split=part, near=bounds[0], far=bounds[1]))
    return LoadedScene(frames)


def read_poses_bounds(path: Path) -> np.ndarray:
    """poses_bounds.npy as a float64 N x 17 array. Its header is checked before any data is read:
    a .npy file (not a zip archive of them), a plain numeric type (nothing unpickled) and an
    N x 17 shape that the file's size holds."""
    import numpy.lib.format as npy

    try:
        with open(path, "rb") as f:
            is_npy = f.read(6) == npy.MAGIC_PREFIX
            if is_npy:
                f.seek(0)
                try:
                    major, _ = npy.read_magic(f)
                    read_header = npy.read_array_header_1_0 if major == 1 else npy.read_array_header_2_0
                    shape, fortran, dtype = read_header(f)
                except ValueError as e:  # numpy's header parser: a malformed header
                    raise DatasetError(f"{path}: not a readable .npy array ({e})") from None
                offset = f.tell()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from None
    if not is_npy:
        raise DatasetError(f"{path}: not a .npy array (a zip archive or another format?)")
    if dtype.kind not in "fiu" or dtype.hasobject:
        raise DatasetError(f"{path}: expected an array of numbers, got type {dtype}")
    if len(shape) != 2 or shape[1] != 17 or shape[0] == 0:
        raise DatasetError(f"{path}: expected an N x 17 array, got shape {shape}")
    count = shape[0] * 17
    if count * dtype.itemsize > path.stat().st_size - offset:
        raise DatasetError(f"{path}: truncated (the header declares {shape[0]} x 17 values)")
    arr = np.fromfile(path, dtype=dtype, count=count, offset=offset)
    return arr.reshape(shape, order="F" if fortran else "C").astype(np.float64)
