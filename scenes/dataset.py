"""Photograph a procedural scene into a posed-image dataset (Blender / NeRF-synthetic layout), so the
trainer, the tests and the demo have real ground truth without downloading anything."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from .cameras import look_at


def dome_cameras(n: int, width: int, height: int, radius: float = 3.2, target=(0.0, 0.0, 0.25),
                 fov_x_degrees: float = 55.0, seed: int = 0):  # fmt: skip
    """n cameras on a dome around `target` (golden-angle spiral over elevations 15-60 degrees),
    all with the same centred pinhole intrinsics. Returns (viewmats (n,4,4), K (3,3)) float64."""
    rng = np.random.default_rng(seed)
    views = []
    for k in range(n):
        azimuth = k * math.pi * (3 - math.sqrt(5)) + rng.uniform(-0.1, 0.1)
        elevation = math.radians(15 + 45 * ((k * 0.618034) % 1.0))
        eye = (
            target[0] + radius * math.cos(elevation) * math.cos(azimuth),
            target[1] + radius * math.cos(elevation) * math.sin(azimuth),
            target[2] + radius * math.sin(elevation),
        )
        views.append(look_at(eye, target, dtype=torch.float64).numpy())
    f = 0.5 * width / math.tan(math.radians(fov_x_degrees) / 2)
    K = np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
    return np.stack(views), K


def render_rgba(scene: dict, views: np.ndarray, K: np.ndarray, width: int, height: int) -> np.ndarray:
    """Render `scene` (splat.rasterize keyword tensors) from each world-to-camera view (OpenCV axes)
    with intrinsics K (3, 3): uint8 RGBA images (n, H, W, 4) with straight (unpremultiplied) alpha."""
    import splat

    n = len(views)
    rgb, alpha, _ = splat.rasterize(**scene, viewmats=torch.from_numpy(np.asarray(views)).float(),
                                    Ks=torch.from_numpy(np.asarray(K)).float().expand(n, 3, 3).contiguous(),
                                    width=width, height=height)  # fmt: skip
    alpha = alpha.clamp(0, 1)
    straight = torch.where(alpha > 1e-6, rgb / alpha.clamp(min=1e-6), torch.zeros_like(rgb)).clamp(0, 1)
    return (torch.cat([straight, alpha], -1).numpy() * 255 + 0.5).astype(np.uint8)


def c2w_opengl(view: np.ndarray) -> np.ndarray:
    """World-to-camera (OpenCV axes) -> camera-to-world with OpenGL axes (Blender / nerfstudio)."""
    return np.linalg.inv(view) @ np.diag([1.0, -1.0, -1.0, 1.0])


def write_png(path: Path, pixels: np.ndarray) -> None:
    import imageio.v3 as iio

    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, pixels)


def write_blender_dataset(scene: dict, root: str | Path, views: np.ndarray, K: np.ndarray, width: int, height: int,
                          n_test: int) -> None:  # fmt: skip
    """Render `scene` (splat.rasterize keyword tensors) from each view and write RGBA PNGs
    (straight alpha) with transforms_train.json / transforms_test.json (the last n_test views)."""
    root = Path(root)
    n = len(views)
    pixels = render_rgba(scene, views, K, width, height)
    angle = 2 * math.atan(0.5 * width / K[0, 0])
    splits = {"train": range(n - n_test), "test": range(n - n_test, n)}
    for split, indices in splits.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        frames = []
        for k in indices:
            write_png(root / split / f"r_{k}.png", pixels[k])
            frames.append({"file_path": f"./{split}/r_{k}", "transform_matrix": c2w_opengl(views[k]).tolist()})
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": angle, "frames": frames}, indent=1))
