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
    check_intrinsics,
    every_nth_test_split,
    intrinsic_matrix,
    viewmat_from_c2w_opengl,
)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG"}


def load_llff(root: Path, images_dir: Path, test_every: int = 8):
    path = root / "poses_bounds.npy"
    try:
        arr = np.load(path)
    except Exception as e:  # noqa: BLE001
        raise DatasetError(f"{path}: cannot read ({e.__class__.__name__}: {e})") from None
    if arr.ndim != 2 or arr.shape[1] != 17 or arr.shape[0] == 0:
        raise DatasetError(f"{path}: expected an N x 17 array, got shape {arr.shape}")
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
    return frames, None
