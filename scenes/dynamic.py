"""A dynamic (4D) procedural scene built from Gaussians, and datasets photographed from it.

The still life's objects, set in motion over normalised time t in [0, 1] (every motion is smooth
in t; the scene is deterministic for a given seed):

    floor         static checkerboard
    sphere        travels along x while bouncing twice (touches the floor at t = 0, 0.5, 1)
    cube          turns half a revolution about its vertical axis
    torus         slides along x, lying on the floor
    appearing     a small cube whose opacity ramps 0 -> 1 over t in [0.3, 0.6]
    disappearing  a small blue sphere that rises and fades 1 -> 0 over t in [0.4, 0.75]

About 13k Gaussians. `dynamic_scene_at(t)` gives the keyword tensors of `splat.rasterize` at one
time; `dynamic_scene_objects()` tells which rows belong to which object.

Three writers film it:
- `write_dnerf_dataset`: D-NeRF layout (monocular: every training frame has its own time and its
  own camera; held-out frames use other cameras at times between the training times).
- `film_dynamic_video`: a video file of the speckled scene filmed by one walking camera, as a
  phone films a moving scene (for `splat train clip.mp4 --model 4d`).
- `write_multiview_video_dataset`: the multi-view video layout `splat.datasets.multiview` reads
  (every camera films every time step).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import torch

from splat.rotation import quat_multiply

from .cameras import intrinsics, look_at
from .dataset import c2w_opengl, dome_cameras, render_rgba, write_png
from .still_life import _cube, _floor, _speckle, _sphere, _torus

OBJECTS = ("floor", "sphere", "cube", "torus", "appearing", "disappearing")
_SPHERE_RADIUS = 0.3
_CUBE_CENTER = (0.55, 0.4, 0.25)
_APPEAR = (0.3, 0.6)  # opacity ramps 0 -> 1 over this time interval
_DISAPPEAR = (0.4, 0.75)  # opacity ramps 1 -> 0 over this time interval
_OPACITY = 0.95


def _rotate_z(means: torch.Tensor, quats: torch.Tensor, center, angle: float):
    """Rotate Gaussians rigidly by `angle` (radians) about the vertical axis through `center`:
    positions turn about the centre and the rotation is composed into each orientation."""
    c, s = math.cos(angle), math.sin(angle)
    R = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=means.dtype)
    center = torch.as_tensor(center, dtype=means.dtype)
    q = torch.tensor([math.cos(angle / 2), 0.0, 0.0, math.sin(angle / 2)], dtype=quats.dtype)
    return (means - center) @ R.T + center, quat_multiply(q, quats)


def _ease(u: float) -> float:
    """Smoothstep of u clamped to [0, 1]: 0 -> 1 with zero slope at both ends."""
    u = min(max(u, 0.0), 1.0)
    return u * u * (3 - 2 * u)


def _ramp(t: float, t0: float, t1: float) -> float:
    return _ease((t - t0) / (t1 - t0))


@functools.lru_cache(maxsize=4)
def _rest(seed: int, speckled: bool = False):
    """Every object at rest, centred at its own origin where it moves: (parts, colors, slices).
    `speckled`: surfaces darkened by the still life's blotchy pattern, fixed to each object."""
    small_sphere = _sphere(600, (0.0, 0.0, 0.0), 0.15)
    small_sphere = (*small_sphere[:3], small_sphere[3] * torch.tensor([0.35, 0.6, 1.0]))  # blue, to tell it apart
    parts = {
        "floor": _floor(80, 1.5),
        "sphere": _sphere(2500, (0.0, 0.0, 0.0), _SPHERE_RADIUS),
        "cube": _cube(18, _CUBE_CENTER, 0.5),
        "torus": _torus(72, 18, (0.0, 0.0, 0.0), 0.28, 0.09),
        "appearing": _cube(10, (-0.55, 0.75, 0.125), 0.25),
        "disappearing": small_sphere,
    }
    slices, start = {}, 0
    for name in OBJECTS:
        n = parts[name][0].shape[0]
        slices[name] = slice(start, start + n)
        start += n
    colors = torch.cat([parts[name][3] for name in OBJECTS])
    g = torch.Generator().manual_seed(seed)
    colors = (colors + 0.03 * torch.randn(colors.shape, generator=g)).clamp(0, 1)  # a little grain
    if speckled:
        rest_means = torch.cat([parts[name][0] for name in OBJECTS])
        colors = colors * (0.25 + 0.75 * _speckle(rest_means, g))[:, None]
    return parts, colors.float().contiguous(), slices


def dynamic_scene_objects() -> dict[str, slice]:
    """Rows of each object (OBJECTS order) in the tensors `dynamic_scene_at` returns."""
    return dict(_rest(0)[2])


def dynamic_scene_at(t: float, seed: int = 0, speckled: bool = False) -> dict[str, torch.Tensor]:
    """Gaussians of the dynamic scene at normalised time t in [0, 1] (float32, CPU): means, quats
    (wxyz), scales and opacities (activated), colors (N, 3) RGB in [0, 1]. Same layout (rows,
    count) at every t; objects that are not visible have opacity 0. The scene sits on z = 0 with
    +z up, within |x|, |y| < 1.5. `speckled`: textured for structure from motion (as
    `still_life(speckled=True)`), the texture moving with each object."""
    t = float(t)
    if not (0.0 <= t <= 1.0):
        raise ValueError(f"time {t} is outside [0, 1]")
    parts, colors, slices = _rest(seed, speckled)
    moved = {"floor": parts["floor"][:2], "appearing": parts["appearing"][:2]}

    means, quats = parts["sphere"][:2]  # travels along x, bouncing twice
    travel = 0.5 - 0.5 * math.cos(math.pi * t)
    center = (
        -0.75 + 0.6 * travel,
        -0.3 + 0.15 * math.sin(2 * math.pi * t),
        _SPHERE_RADIUS + 0.45 * math.sin(2 * math.pi * t) ** 2,
    )
    moved["sphere"] = (means + torch.tensor(center), quats)

    means, quats = parts["cube"][:2]  # half a turn about its vertical axis
    moved["cube"] = _rotate_z(means, quats, _CUBE_CENTER, math.pi * t)

    means, quats = parts["torus"][:2]  # slides along x on the floor
    moved["torus"] = (means + torch.tensor((0.7 - 0.75 * _ease(t), -0.95, 0.09)), quats)

    means, quats = parts["disappearing"][:2]  # rises while it fades
    moved["disappearing"] = (means + torch.tensor((0.0, 0.85, 0.35 + 0.25 * t)), quats)

    opacity = {name: _OPACITY for name in OBJECTS}
    opacity["appearing"] = _OPACITY * _ramp(t, *_APPEAR)
    opacity["disappearing"] = _OPACITY * (1.0 - _ramp(t, *_DISAPPEAR))
    opacities = torch.cat([torch.full((slices[name].stop - slices[name].start,), opacity[name]) for name in OBJECTS])
    return {
        "means": torch.cat([moved[name][0] for name in OBJECTS]).float().contiguous(),
        "quats": torch.cat([moved[name][1] for name in OBJECTS]).float().contiguous(),
        "scales": torch.cat([parts[name][2] for name in OBJECTS]).float().contiguous(),
        "opacities": opacities.float(),
        "colors": colors.clone(),
    }


def _between_times(n: int, n_train: int, offset: float) -> list[float]:
    """n times spread over [0, 1], each strictly inside an interval between two consecutive training
    times k / (n_train - 1) (at `offset` in (0, 1) of the way along it)."""
    gaps = n_train - 1
    return [(math.floor((j + 0.5) * gaps / n) + offset) / gaps for j in range(n)]


def write_dnerf_dataset(
    root: str | Path,
    n_train: int = 48,
    n_test: int = 8,
    width: int = 160,
    height: int = 120,
    seed: int = 0,
    n_val: int | None = None,
) -> None:
    """Photograph the dynamic scene into a D-NeRF layout dataset: `transforms_{train,val,test}.json`
    (`camera_angle_x`; frames with `file_path` "./train/r_000", `transform_matrix` camera-to-world
    with OpenGL axes, `time`) and RGBA PNGs with straight alpha. Monocular, like D-NeRF: training
    frame k has its own camera (one dome camera per frame) and time k / (n_train - 1); validation
    (n_val, default n_test) and test frames use held-out cameras at times between training times."""
    if n_train < 2 or n_test < 1:
        raise ValueError("write_dnerf_dataset needs n_train >= 2 and n_test >= 1")
    n_val = n_test if n_val is None else n_val
    root = Path(root)
    views, K = dome_cameras(n_train + n_val + n_test, width, height, seed=seed)
    angle = 2 * math.atan(0.5 * width / K[0, 0])
    splits = {
        "train": (views[:n_train], [k / (n_train - 1) for k in range(n_train)]),
        "val": (views[n_train : n_train + n_val], _between_times(n_val, n_train, 0.25)),
        "test": (views[n_train + n_val :], _between_times(n_test, n_train, 0.5)),
    }
    for split, (split_views, times) in splits.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        digits = max(3, len(str(len(times) - 1)))
        frames = []
        for k, (view, t) in enumerate(zip(split_views, times)):
            name = f"r_{k:0{digits}d}"
            write_png(
                root / split / f"{name}.png", render_rgba(dynamic_scene_at(t, seed), view[None], K, width, height)[0]
            )
            frames.append({"file_path": f"./{split}/{name}", "transform_matrix": c2w_opengl(view).tolist(), "time": t})
        (root / f"transforms_{split}.json").write_text(
            json.dumps({"camera_angle_x": angle, "frames": frames}, indent=1)
        )


def walk_views(n: int, radius: float = 3.0, target=(0.0, 0.0, 0.25)) -> np.ndarray:
    """World-to-camera matrices (n, 4, 4) float64 of one camera walking three quarters of the way
    round the scene, rising and falling (a hand-held walk, not a turntable)."""
    views = []
    for k in range(n):
        a = 1.5 * math.pi * k / max(n - 1, 1)
        eye = (radius * math.cos(a), radius * math.sin(a), 1.4 + 0.3 * math.sin(3 * a))
        views.append(look_at(eye, target, dtype=torch.float64).numpy())
    return np.stack(views)


def film_dynamic_video(
    path: str | Path, n_frames: int = 48, width: int = 320, height: int = 240, fps: float = 10.0, seed: int = 0
) -> np.ndarray:
    """Film the speckled dynamic scene with one walking camera (`walk_views`) into a video file:
    frame k at time k / (n_frames - 1), on a grey background, as a phone would film a moving scene.
    Returns the world-to-camera matrices (n_frames, 4, 4)."""
    import imageio_ffmpeg

    views = walk_views(n_frames)
    K = intrinsics(width, height, 55.0, dtype=torch.float64).numpy()
    writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=fps, quality=9, macro_block_size=2)
    writer.send(None)
    try:
        for k, view in enumerate(views):
            scene = dynamic_scene_at(k / max(n_frames - 1, 1), seed, speckled=True)
            rgba = render_rgba(scene, view[None], K, width, height)
            rgb, alpha = rgba[0, ..., :3] / 255.0, rgba[0, ..., 3:] / 255.0
            writer.send(np.ascontiguousarray((255 * (rgb * alpha + 0.5 * (1 - alpha)) + 0.5).astype(np.uint8)))
    finally:
        writer.close()
    return views


def write_multiview_video_dataset(
    root: str | Path,
    n_cameras: int = 6,
    n_times: int = 10,
    width: int = 160,
    height: int = 120,
    seed: int = 0,
    fps: float = 30.0,
) -> None:
    """Film the dynamic scene with n_cameras fixed dome cameras at n_times evenly spaced times, in
    the multi-view video layout (`splat.datasets.multiview`): `transforms.json` with a "cameras"
    list (name, camera-to-world `transform_matrix` with OpenGL axes, fl_x fl_y cx cy w h) and "fps",
    and `cam00/000000.png ...` per camera (RGBA, straight alpha). cam00 is the held-out view."""
    if n_cameras < 1 or n_times < 1:
        raise ValueError("write_multiview_video_dataset needs n_cameras >= 1 and n_times >= 1")
    root = Path(root)
    views, K = dome_cameras(n_cameras, width, height, seed=seed)
    names = [f"cam{c:02d}" for c in range(n_cameras)]
    for i in range(n_times):
        t = i / (n_times - 1) if n_times > 1 else 0.0
        pixels = render_rgba(dynamic_scene_at(t, seed), views, K, width, height)
        for name, image in zip(names, pixels):
            write_png(root / name / f"{i:06d}.png", image)
    cameras = [
        {
            "name": name,
            "transform_matrix": c2w_opengl(view).tolist(),
            "fl_x": float(K[0, 0]),
            "fl_y": float(K[1, 1]),
            "cx": float(K[0, 2]),
            "cy": float(K[1, 2]),
            "w": width,
            "h": height,
        }
        for name, view in zip(names, views)
    ]
    (root / "transforms.json").write_text(json.dumps({"fps": fps, "cameras": cameras}, indent=1))
