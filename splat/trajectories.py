"""Camera paths for rendering videos and datasets: orbit, spiral, a smooth path through the
training cameras, and paths read from a nerfstudio transforms.json or camera_path.json."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .camera import Camera, quat_to_rotmat, rotmat_to_quat
from .errors import InputError


def orbit(
    center,
    radius: float,
    n: int,
    *,
    height: float = 0.0,
    up=(0.0, 0.0, 1.0),
    width: int = 640,
    image_height: int = 480,
    fov_x: float = 50.0,
    phase: float = 0.0,
) -> list[Camera]:
    """n cameras on a circle of `radius` around `center` (at `height` above it along `up`), looking at it."""
    center = np.asarray(center, dtype=np.float64)
    up = np.asarray(up, dtype=np.float64) / np.linalg.norm(up)
    a = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 1.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(up, a)
    cams = []
    for k in range(n):
        t = phase + 2 * math.pi * k / n
        eye = center + radius * (math.cos(t) * a + math.sin(t) * b) + height * up
        cams.append(Camera.look_at(eye, center, up, width=width, height=image_height, fov_x=fov_x))
    return cams


def _mean_up(cameras: list[Camera]) -> np.ndarray:
    up = -np.mean([c.c2w[:3, 1] for c in cameras], axis=0)  # OpenCV y points down
    return up / np.linalg.norm(up)


def _focus(cameras: list[Camera]) -> np.ndarray:
    """What the cameras look at (`datasets.focus_point`); for near-parallel axes (forward-facing
    captures), a point ahead of the cameras rather than their centroid, so paths keep a direction."""
    from splat.datasets import focus_point

    centers = np.stack([c.center for c in cameras])
    d = np.stack([c.c2w[:3, 2] for c in cameras])
    centroid = centers.mean(0)
    p = focus_point(centers, d)
    if np.array_equal(p, centroid):
        return centroid + d.mean(0) * np.linalg.norm(centers - centroid, axis=1).mean()
    return p


def orbit_around(cameras: list[Camera], n: int, **kw) -> list[Camera]:
    """An orbit around what the cameras look at, at their mean distance and height."""
    focus, up = _focus(cameras), _mean_up(cameras)
    rel = np.stack([c.center for c in cameras]) - focus
    height = float(np.mean(rel @ up))
    radius = float(np.mean(np.linalg.norm(rel - np.outer(rel @ up, up), axis=1)))
    ref = cameras[0]
    kw.setdefault("width", ref.width)
    kw.setdefault("image_height", ref.height)
    kw.setdefault("fov_x", ref.fov_x)
    return orbit(focus, radius, n, height=height, up=up, **kw)


def spiral(cameras: list[Camera], n: int, rotations: float = 2.0, radius_scale: float = 1.0) -> list[Camera]:
    """LLFF-style spiral in front of the mean camera pose, looking at the cameras' focus."""
    focus, up = _focus(cameras), _mean_up(cameras)
    centers = np.stack([c.center for c in cameras])
    mean_center = centers.mean(0)
    forward = focus - mean_center
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    cam_up = np.cross(right, forward)
    spread = np.percentile(np.abs((centers - mean_center) @ np.stack([right, cam_up]).T), 90, axis=0) * radius_scale
    spread = np.maximum(spread, 1e-3 * np.linalg.norm(focus - mean_center))
    ref = cameras[0]
    out = []
    for k in range(n):
        t = 2 * math.pi * rotations * k / n
        eye = mean_center + spread[0] * math.cos(t) * right + spread[1] * math.sin(t) * cam_up
        eye = eye + 0.1 * spread.mean() * math.sin(t / rotations) * forward
        out.append(Camera.look_at(eye, focus, up, width=ref.width, height=ref.height, fov_x=ref.fov_x))
    return out


def _slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    if np.dot(q0, q1) < 0:
        q1 = -q1
    dot = min(1.0, float(np.dot(q0, q1)))
    if dot > 0.9995:
        q = q0 + t * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = math.acos(dot)
    return (math.sin((1 - t) * theta) * q0 + math.sin(t * theta) * q1) / math.sin(theta)


def _catmull_rom(p0, p1, p2, p3, t: float) -> np.ndarray:
    return 0.5 * (
        2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
    )


def nearest_neighbour_order(cameras: list[Camera]) -> list[int]:
    """A visiting order that hops to the closest unvisited camera (position and viewing direction),
    so an interpolated path has no long jumps."""
    centers = np.stack([c.center for c in cameras])
    dirs = np.stack([c.c2w[:3, 2] for c in cameras])
    scale = np.linalg.norm(centers - centers.mean(0), axis=1).mean() + 1e-12
    order, left = [0], set(range(1, len(cameras)))
    while left:
        last = order[-1]
        cand = np.array(sorted(left))
        cost = np.linalg.norm(centers[cand] - centers[last], axis=1) / scale + 0.5 * (1 - dirs[cand] @ dirs[last])
        nxt = int(cand[np.argmin(cost)])
        order.append(nxt)
        left.remove(nxt)
    return order


def interpolate(cameras: list[Camera], n: int, loop: bool = True) -> list[Camera]:
    """n cameras along a smooth path through `cameras` (visited in nearest-neighbour order):
    Catmull-Rom positions, slerped rotations, linearly blended intrinsics."""
    if len(cameras) < 2:
        raise InputError("interpolate: needs at least two cameras")
    cams = [cameras[i] for i in nearest_neighbour_order(cameras)]
    m = len(cams)
    pos = [c.center for c in cams]
    quats = [rotmat_to_quat(c.c2w[:3, :3]) for c in cams]
    segments = m if loop else m - 1
    ref = cams[0]
    out = []
    for k in range(n):
        u = k * segments / n if loop else k * segments / max(n - 1, 1)
        i = min(int(u), segments - 1)
        t = u - i
        idx = (
            [(i - 1) % m, i % m, (i + 1) % m, (i + 2) % m]
            if loop
            else [max(i - 1, 0), i, min(i + 1, m - 1), min(i + 2, m - 1)]
        )
        center = _catmull_rom(*(pos[j] for j in idx), t)
        R = quat_to_rotmat(_slerp(quats[idx[1]], quats[idx[2]], t))
        a, b = cams[idx[1]], cams[idx[2]]
        view = np.eye(4)
        view[:3, :3] = R.T
        view[:3, 3] = -R.T @ center
        lerp = lambda x, y, t=t: (1 - t) * x + t * y  # noqa: E731
        out.append(
            Camera(ref.width, ref.height, lerp(a.fx, b.fx), lerp(a.fy, b.fy), lerp(a.cx, b.cx), lerp(a.cy, b.cy), view)
        )
    return out


def from_json(path: str | Path, width: int | None = None, height: int | None = None) -> list[Camera]:
    """Cameras from a nerfstudio transforms.json (frames + intrinsics) or a nerfstudio
    camera_path.json (`camera_path` entries with `camera_to_world` and `fov`)."""
    from .io_utils import read_json_object

    path = Path(path)
    meta = read_json_object(path)
    cams = []
    try:
        if "camera_path" in meta:
            W = int(width or meta.get("render_width", 640))
            H = int(height or meta.get("render_height", 480))
            for entry in meta["camera_path"]:
                c2w = np.asarray(entry["camera_to_world"], dtype=np.float64).reshape(4, 4)
                fy = 0.5 * H / math.tan(math.radians(float(entry.get("fov", 50.0))) / 2)  # nerfstudio fov is vertical
                cams.append(Camera.from_c2w_opengl(c2w, width=W, height=H, fx=fy, fy=fy))
        else:
            for frame in meta["frames"]:

                def get(k, default=None, frame=frame):
                    return frame.get(k, meta.get(k, default))

                W0, H0 = int(get("w")), int(get("h"))
                cam = Camera.from_c2w_opengl(
                    frame["transform_matrix"],
                    width=W0,
                    height=H0,
                    fx=float(get("fl_x")),
                    fy=float(get("fl_y", get("fl_x"))),
                    cx=float(get("cx", W0 / 2)),
                    cy=float(get("cy", H0 / 2)),
                )
                cams.append(cam.resized(width or W0, height or H0) if (width or height) else cam)
    except (KeyError, TypeError, ValueError, OverflowError, ZeroDivisionError) as e:
        raise InputError(f"{path}: not a transforms.json or camera_path.json ({e.__class__.__name__}: {e})") from None
    if not cams:
        raise InputError(f"{path}: holds no cameras")
    return cams
