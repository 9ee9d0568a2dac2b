"""Camera helpers for procedural scenes, as the tensors `splat.rasterize` takes: `splat.Camera.look_at`
and `splat.trajectories.orbit` poses (OpenCV axes) and centred pinhole intrinsics."""

from __future__ import annotations

import math

import numpy as np
import torch

from splat import trajectories
from splat.camera import Camera, focal_length


def look_at(eye, target, up=(0.0, 0.0, 1.0), dtype=torch.float32) -> torch.Tensor:
    """World-to-camera 4x4 for a camera at `eye` looking at `target`, OpenCV axes (x right, y down, z forward)."""
    return torch.from_numpy(Camera.look_at(eye, target, up).viewmat).to(dtype)


def intrinsics(width: int, height: int, fov_x_degrees: float = 50.0, dtype=torch.float32) -> torch.Tensor:
    """Pinhole K with square pixels and the principal point at the image centre."""
    f = focal_length(width, fov_x_degrees)
    return torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]], dtype=dtype)


def orbit_cameras(
    n: int, radius: float, height: float, target=(0.0, 0.0, 0.0), phase: float = 0.0, **intrinsics
) -> list[Camera]:
    """n cameras on a horizontal circle around `target` (`height` above it), all looking at it, the
    k-th at angle phase + 2 pi k / n from the world x axis; `intrinsics`: width, image_height, fov_x
    as for `splat.trajectories.orbit` (whose angle 0 is the world y axis)."""
    return trajectories.orbit(target, radius, n, height=height, phase=phase - math.pi / 2, **intrinsics)


def orbit(n: int, radius: float, height: float, target=(0.0, 0.0, 0.0), phase: float = 0.0, dtype=torch.float32):
    """`orbit_cameras`' world-to-camera matrices (n, 4, 4)."""
    views = np.stack([c.viewmat for c in orbit_cameras(n, radius, height, target, phase)])
    return torch.from_numpy(views).to(dtype)
