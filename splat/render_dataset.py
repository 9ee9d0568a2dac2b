"""`splat render`: render a scene along a trajectory into images, depth, alpha masks, a
nerfstudio transforms.json (which `splat train` reads back) and optionally an mp4.

Layout of the output folder:
    images/frame_00000.png        RGB, 8-bit
    depth/frame_00000.png         expected depth, 16-bit, millimetres (nerfstudio's convention)
    depth/frame_00000.npy         expected depth, float32, scene units (0 where nothing is hit)
    masks/frame_00000.png         alpha, 8-bit
    transforms.json               PINHOLE intrinsics, OpenGL camera-to-world per frame,
                                  file_path / depth_file_path / mask_path (and time for 4D)
    video.mp4                     with --video
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .camera import Camera
from .errors import InputError
from .io_utils import atomic_path, write_image

if TYPE_CHECKING:
    import torch

    from .field_scene import FieldScene
    from .scene import GaussianScene

DEPTH_SCALE = 1000.0  # 16-bit depth PNGs hold millimetres: depth = png / 1000


def write_depth_png(path: Path, depth: np.ndarray) -> None:
    import imageio.v3 as iio

    mm = np.clip(np.round(depth * DEPTH_SCALE), 0, 65535).astype(np.uint16)
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, mm, extension=".png")


def render_to_folder(
    scene: GaussianScene | FieldScene,
    cameras: Sequence[Camera],
    out: str | Path,
    *,
    depth: bool = False,
    alpha: bool = False,
    video: bool = False,
    background: Sequence[float] | torch.Tensor = (1.0, 1.0, 1.0),
    times: Sequence[float] | None = None,
    fps: int = 30,
    progress: Callable[[int, int], None] | None = None,
    shard: tuple[int, int] = (0, 1),
    wait_for_shards: Callable[[], None] | None = None,
) -> Path:
    """Render `cameras` (and `times` for dynamic scenes) into `out`; returns the transforms.json path.

    shard (rank, ranks): render only frames k with k % ranks == rank; after `wait_for_shards()`
    (a barrier), rank 0 writes the transforms.json of all frames (the same file an unsharded
    render writes) and the video."""
    out = Path(out)
    rank, ranks = shard
    outputs = ("rgb",) + (("depth",) if depth else ()) + (("alpha",) if alpha else ())
    frames, video_frames = [], []
    mine, done = len(range(rank, len(cameras), ranks)), 0
    for k, cam in enumerate(cameras):
        t = None if times is None else float(times[k])
        name = f"frame_{k:05d}"
        entry = {
            "file_path": f"images/{name}.png",
            "transform_matrix": cam.c2w_opengl.tolist(),
            "fl_x": cam.fx,
            "fl_y": cam.fy,
            "cx": cam.cx,
            "cy": cam.cy,
            "w": cam.width,
            "h": cam.height,
        }
        if depth:
            entry["depth_file_path"] = f"depth/{name}.png"
        if alpha:
            entry["mask_path"] = f"masks/{name}.png"
        if t is not None:
            entry["time"] = t
        frames.append(entry)
        if k % ranks != rank:
            continue
        result = scene.render(cam, outputs=outputs, background=background, time=t)
        rgb = result["rgb"].cpu()
        write_image(out / "images" / f"{name}.png", rgb)
        if depth:
            d = result["depth"][..., 0].cpu().numpy().astype(np.float32)
            write_depth_png(out / "depth" / f"{name}.png", d)
            with atomic_path(out / "depth" / f"{name}.npy") as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, d)
        if alpha:
            write_image(out / "masks" / f"{name}.png", result["alpha"].cpu())
        if video and ranks == 1:
            video_frames.append((rgb.numpy() * 255 + 0.5).astype(np.uint8))
        done += 1
        if progress is not None:
            progress(done, mine)
    if wait_for_shards is not None:
        wait_for_shards()
    transforms = out / "transforms.json"
    if rank != 0:
        return transforms
    first = cameras[0]
    meta = {
        "camera_model": "PINHOLE",
        "w": first.width,
        "h": first.height,
        "fl_x": first.fx,
        "fl_y": first.fy,
        "cx": first.cx,
        "cy": first.cy,
        "depth_unit_scale_factor": 1.0 / DEPTH_SCALE,
        "frames": frames,
    }
    with atomic_path(transforms) as tmp:
        tmp.write_text(json.dumps(meta, indent=1) + "\n")
    if video:
        if ranks > 1:  # the other ranks' frames, as written (the PNGs hold the same 8-bit values)
            import imageio.v3 as iio

            video_frames = [iio.imread(out / f["file_path"]) for f in frames]
        write_video(out / "video.mp4", video_frames, fps)
    return transforms


def write_video(path: Path, frames: list[np.ndarray], fps: int) -> None:
    import imageio.v3 as iio

    even = [f[: f.shape[0] // 2 * 2, : f.shape[1] // 2 * 2] for f in frames]  # H.264 wants even sizes
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, np.stack(even), extension=".mp4", fps=fps, codec="libx264", macro_block_size=1)


def build_trajectory(
    scene: GaussianScene | FieldScene, kind: str, frames: int, width: int | None, height: int | None
) -> list[Camera]:
    """orbit / spiral / train (a smooth path through the training cameras) / a JSON file."""
    from . import trajectories

    if kind.endswith(".json"):
        return trajectories.from_json(kind, width, height)
    cams = scene.cameras
    if kind in ("spiral", "train") and not cams:
        raise InputError(
            f"--trajectory {kind}: needs the scene's training cameras (give a run folder whose data is reachable)"
        )
    if kind == "orbit":
        if cams:
            path = trajectories.orbit_around(cams, frames)
        else:
            lo, hi = scene.bounds()
            center, size = (lo + hi) / 2, float(np.linalg.norm(hi - lo))
            path = trajectories.orbit(
                center, 1.2 * size, frames, height=0.5 * size, width=width or 640, image_height=height or 480
            )
    elif kind == "spiral":
        path = trajectories.spiral(cams, frames)
    elif kind == "train":
        path = trajectories.interpolate(cams, frames)
    else:
        raise InputError(f"--trajectory: expected orbit, spiral, train or a .json path, got {kind!r}")
    if width or height:
        ref = path[0]
        w = width or round(ref.width * height / ref.height)
        h = height or round(ref.height * width / ref.width)
        path = [c.resized(w, h) for c in path]
    return path


def as_tensor_background(spec: str) -> tuple[float, float, float]:
    named = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}
    if spec in named:
        return named[spec]
    try:
        values = tuple(float(v) for v in spec.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 <= v <= 1 for v in values):
        raise InputError(f"--background: expected white, black or R,G,B in [0, 1], got {spec!r}")
    return values


def parse_times(spec: str) -> list[float]:
    """`--times START:END:COUNT`: COUNT times evenly spaced from START to END."""
    try:
        t0, t1, n = spec.split(":")
        t0, t1, n = float(t0), float(t1), int(n)
    except ValueError:
        raise InputError(f"--times: expected START:END:COUNT, e.g. 0:1:120, got {spec!r}") from None
    return [t0 + (t1 - t0) * k / max(n - 1, 1) for k in range(n)]
