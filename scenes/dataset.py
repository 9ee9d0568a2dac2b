"""Photograph a procedural scene into a posed-image dataset (Blender / NeRF-synthetic layout), so the
trainer, the tests and the demo have real ground truth without downloading anything."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from splat.camera import OPENGL_TO_OPENCV

from .cameras import intrinsics, look_at


def dome_cameras(
    n: int,
    width: int,
    height: int,
    radius: float = 3.2,
    target=(0.0, 0.0, 0.25),
    fov_x_degrees: float = 55.0,
    seed: int = 0,
):
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
    K = intrinsics(width, height, fov_x_degrees, dtype=torch.float64).numpy()
    return np.stack(views), K


def render_rgba(
    scene: dict, views: np.ndarray, K: np.ndarray, width: int, height: int, supersample: int = 1
) -> np.ndarray:
    """Render `scene` (splat.rasterize keyword tensors) from each world-to-camera view (OpenCV axes)
    with intrinsics K (3, 3): uint8 RGBA images (n, H, W, 4) with straight (unpremultiplied) alpha.
    `supersample` s > 1 renders s x s samples per pixel and averages them, as a camera's pixels
    integrate over their area."""
    from splat.renderer.rasterization import rasterize

    n, s = len(views), supersample
    Ks = torch.from_numpy(np.asarray(K)).float().clone()
    Ks[:2] *= s  # exact for pixel centres at integer + 0.5 (splat.Camera.resized)
    rgb, alpha, _ = rasterize(
        **scene,
        viewmats=torch.from_numpy(np.asarray(views)).float(),
        Ks=Ks.expand(n, 3, 3).contiguous(),
        width=width * s,
        height=height * s,
    )
    if s > 1:  # premultiplied colour and alpha average over each pixel's samples
        rgb = rgb.reshape(n, height, s, width, s, -1).mean((2, 4))
        alpha = alpha.reshape(n, height, s, width, s, 1).mean((2, 4))
    alpha = alpha.clamp(0, 1)
    straight = torch.where(alpha > 1e-6, rgb / alpha.clamp(min=1e-6), torch.zeros_like(rgb)).clamp(0, 1)
    return (torch.cat([straight, alpha], -1).numpy() * 255 + 0.5).astype(np.uint8)


def c2w_opengl(view: np.ndarray) -> np.ndarray:
    """World-to-camera (OpenCV axes) -> camera-to-world with OpenGL axes (Blender / nerfstudio)."""
    return np.linalg.inv(view) @ OPENGL_TO_OPENCV


def write_png(path: Path, pixels: np.ndarray) -> None:
    import imageio.v3 as iio

    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, pixels)


def write_blender_dataset(
    scene: dict,
    root: str | Path,
    views: np.ndarray,
    K: np.ndarray,
    width: int,
    height: int,
    n_test: int,
    supersample: int = 1,
) -> None:
    """Render `scene` (splat.rasterize keyword tensors) from each view and write RGBA PNGs
    (straight alpha) with transforms_train.json / transforms_test.json (the last n_test views);
    `supersample`: samples per pixel side, averaged (render_rgba)."""
    root = Path(root)
    n = len(views)
    pixels = render_rgba(scene, views, K, width, height, supersample)
    angle = 2 * math.atan(0.5 * width / K[0, 0])
    splits = {"train": range(n - n_test), "test": range(n - n_test, n)}
    for split, indices in splits.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        frames = []
        for k in indices:
            write_png(root / split / f"r_{k}.png", pixels[k])
            frames.append({"file_path": f"./{split}/r_{k}", "transform_matrix": c2w_opengl(views[k]).tolist()})
        (root / f"transforms_{split}.json").write_text(
            json.dumps({"camera_angle_x": angle, "frames": frames}, indent=1)
        )


def forward_facing_cameras(
    n: int,
    width: int,
    height: int,
    eye=(0.0, -3.4, 1.1),
    target=(0.0, 0.0, 0.3),
    spread=(0.6, 0.35),
    fov_x_degrees: float = 55.0,
    seed: int = 0,
):
    """n cameras of a hand-held forward-facing capture (LLFF-style): centres jittered on a small
    grid around `eye`, all looking the same way (at `target` from `eye`). (viewmats, K) float64."""
    rng = np.random.default_rng(seed)
    base = look_at(eye, target, dtype=torch.float64).numpy()
    cols = math.ceil(math.sqrt(n * spread[0] / spread[1]))
    rows = math.ceil(n / cols)
    views = []
    for k in range(n):
        i, j = k % cols, k // cols
        dx = spread[0] * ((i + 0.5) / cols - 0.5) + rng.uniform(-0.02, 0.02)
        dy = spread[1] * ((j + 0.5) / rows - 0.5) + rng.uniform(-0.02, 0.02)
        view = base.copy()
        view[:3, 3] -= np.array([dx, dy, 0.0])  # move the camera in its own image plane
        views.append(view)
    K = intrinsics(width, height, fov_x_degrees, dtype=torch.float64).numpy()
    return np.stack(views), K


def write_llff_dataset(
    scene: dict, root: str | Path, views: np.ndarray, K: np.ndarray, width: int, height: int, background=(0.0, 0.0, 0.0)
) -> None:
    """Render `scene` and write an LLFF capture without points: images/ and poses_bounds.npy,
    whose near/far per image are the 0.1 / 99.9 percentile depths of the scene's visible
    Gaussians (as LLFF's imgs2poses does with its sparse points)."""
    root = Path(root)
    pixels = render_rgba(scene, views, K, width, height).astype(np.float64) / 255.0
    rgb = pixels[..., :3] * pixels[..., 3:] + np.asarray(background) * (1 - pixels[..., 3:])
    means = scene["means"].double().numpy()
    rows = []
    for k, view in enumerate(views):
        write_png(root / "images" / f"image_{k:03d}.png", (rgb[k] * 255 + 0.5).astype(np.uint8))
        p = means @ view[:3, :3].T + view[:3, 3]
        uv = p[:, :2] / p[:, 2:3] * np.array([K[0, 0], K[1, 1]]) + K[:2, 2]
        seen = (p[:, 2] > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
        near, far = np.percentile(p[seen, 2], [0.1, 99.9])
        c2w = c2w_opengl(view)
        # LLFF's rotation columns are (down, right, back) = (-y, x, z) of the OpenGL camera
        m = np.concatenate([-c2w[:3, 1:2], c2w[:3, 0:1], c2w[:3, 2:3], c2w[:3, 3:4], [[height], [width], [K[0, 0]]]], 1)
        rows.append(np.concatenate([m.ravel(), [near, far]]))
    np.save(root / "poses_bounds.npy", np.stack(rows))
