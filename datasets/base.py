"""The common in-memory form of every posed-image dataset.

Every loader turns its format into a `LoadedScene`: `Frame`s (one image, its `splat.Camera`, its
split) plus optional sparse points, which images saw each point, a scene box and notes. Cameras are
stored the renderer's way: world-to-camera 4x4 with OpenCV axes (x right, y down, z forward) and
pixel intrinsics whose pixel centres sit at integer + 0.5; the lens distortion of the image file
(`Camera.lens`, `Camera.distortion`) and, for dynamic scenes, the frame's `time` ride along.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from splat.camera import OPENGL_TO_OPENCV, Camera
from splat.errors import InputError


class DatasetError(InputError):
    """Bad or unreadable input data; the message names the file."""


@dataclasses.dataclass
class Frame:
    name: str
    image_path: Path
    camera: Camera
    split: str  # "train", "test" or "val" (held out, scored apart from test)
    mask_path: Path | None = None
    depth_path: Path | None = None
    near: float | None = None  # depth range of the content seen by this frame (LLFF bounds), dataset units
    far: float | None = None


@dataclasses.dataclass
class LoadedScene:
    """What a format's loader read (datasets/loading.py makes the `SceneDataset` of it)."""

    frames: list[Frame]
    points: tuple[np.ndarray, np.ndarray] | None = None  # sparse points: xyz (P, 3), uint8 rgb (P, 3)
    observers: list[list[int]] | None = None  # per point, the frames that saw it (COLMAP tracks)
    bounds: dict | None = None  # a box that holds the content (instant-ngp's aabb: scene_bounds.py)
    notes: tuple[str, ...] = ()  # what the loader chose or dropped, for the start-up summary


def check_pose(pose: np.ndarray, where: str) -> np.ndarray:
    """A finite rigid 4x4 pose (rotation block orthonormal with det +1), or a DatasetError naming
    `where` (NaN, singular or scaled matrices cannot be inverted into a camera)."""
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape == (3, 4):
        pose = np.vstack([pose, [0.0, 0.0, 0.0, 1.0]])
    if pose.shape != (4, 4) or not np.isfinite(pose).all():
        raise DatasetError(f"{where}: pose contains NaN/Inf or is not 4x4")
    R = pose[:3, :3]
    det = np.linalg.det(R)
    if not abs(det - 1.0) < 1e-3 or not np.allclose(R @ R.T, np.eye(3), atol=1e-3):
        raise DatasetError(
            f"{where}: pose is not a rigid transform (rotation determinant {det:.4g}): singular or scaled"
        )
    return pose


def viewmat_from_c2w_opengl(c2w: np.ndarray, where: str) -> np.ndarray:
    """Blender / nerfstudio camera-to-world (OpenGL axes: y up, looking down -z) -> world-to-camera
    with OpenCV axes: flip the camera's y and z, then invert (rigidly)."""
    c2w_cv = check_pose(c2w, where) @ OPENGL_TO_OPENCV
    view = np.eye(4)
    view[:3, :3] = c2w_cv[:3, :3].T
    view[:3, 3] = -c2w_cv[:3, :3].T @ c2w_cv[:3, 3]
    return view


def pinhole_if_undistorted(lens: str, distortion: tuple) -> tuple[str, tuple]:
    """Lens models whose coefficients are all zero are plain pinholes (no resampling needed)."""
    if lens != "PINHOLE" and not any(distortion):
        return "PINHOLE", ()
    return lens, tuple(distortion)


def intrinsic_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def every_nth_test_split(names: list[str], every: int = 8) -> list[str]:
    """LLFF / Mip-NeRF 360 convention: every 8th image (sorted by name) is held out. Datasets of
    fewer than `every` images hold none out (they need every image to train; evaluation then uses
    the training images, and the dataset's summary says so)."""
    order = sorted(range(len(names)), key=lambda i: names[i])
    split = ["train"] * len(names)
    if every > 0 and len(names) >= every:
        for rank, i in enumerate(order):
            if rank % every == 0:
                split[i] = "test"
    return split


def natural_key(name: str) -> list:
    """Sort key for file names in natural order: r_2.png before r_10.png."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
