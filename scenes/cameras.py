"""Camera helpers for procedural scenes: look-at extrinsics (OpenCV axes) and simple intrinsics."""

from __future__ import annotations

import math

import torch


def look_at(eye, target, up=(0.0, 0.0, 1.0), dtype=torch.float32) -> torch.Tensor:
    """World-to-camera 4x4 for a camera at `eye` looking at `target`, OpenCV axes (x right, y down, z forward)."""
    eye = torch.as_tensor(eye, dtype=torch.float64)
    target = torch.as_tensor(target, dtype=torch.float64)
    up = torch.as_tensor(up, dtype=torch.float64)
    forward = target - eye
    forward = forward / forward.norm()
    right = torch.linalg.cross(forward, up)
    if right.norm() < 1e-9:  # looking straight along `up`: any perpendicular right vector will do
        right = torch.linalg.cross(forward, torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    view = torch.eye(4, dtype=torch.float64)
    view[:3, :3] = torch.stack([right, down, forward])
    view[:3, 3] = -view[:3, :3] @ eye
    return view.to(dtype)


def intrinsics(width: int, height: int, fov_x_degrees: float = 50.0, dtype=torch.float32) -> torch.Tensor:
    """Pinhole K with square pixels and the principal point at the image centre."""
    f = 0.5 * width / math.tan(math.radians(fov_x_degrees) / 2)
    return torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]], dtype=dtype)


def orbit(n: int, radius: float, height: float, target=(0.0, 0.0, 0.0), phase: float = 0.0, dtype=torch.float32):
    """n world-to-camera matrices on a horizontal circle around `target`, all looking at it."""
    views = []
    for k in range(n):
        a = phase + 2 * math.pi * k / n
        eye = (target[0] + radius * math.cos(a), target[1] + radius * math.sin(a), target[2] + height)
        views.append(look_at(eye, target, dtype=dtype))
    return torch.stack(views)
