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


class _BadValue(Exception):
    """A value in a camera file that is not what it should be (reported as InputError)."""


def from_json(path: str | Path, width: int | None = None, height: int | None = None) -> list[Camera]:
    """Cameras from a nerfstudio transforms.json (frames + intrinsics) or a nerfstudio
    camera_path.json (`camera_path` entries with `camera_to_world` and `fov`). Every value is
    checked as it is read (InputError naming the file); building the cameras from checked values
    cannot fail on the file's account, so an error there is a bug."""
    from .io_utils import read_json_object

    path = Path(path)
    meta = read_json_object(path)
    try:
        if "camera_path" in meta:
            W = _count(width or meta.get("render_width", 640), "render_width")
            H = _count(height or meta.get("render_height", 480), "render_height")
            specs = []
            for entry in _entries(meta, "camera_path"):
                fov = _number(entry.get("fov", 50.0), "fov")  # nerfstudio's fov is vertical
                if not 0 < fov < 180:
                    raise _BadValue(f"fov {fov} is not an angle in (0, 180) degrees")
                fy = 0.5 * H / math.tan(math.radians(fov) / 2)
                specs.append((_pose(entry, "camera_to_world"), dict(width=W, height=H, fx=fy, fy=fy), None))
        else:
            specs = []
            for frame in _entries(meta, "frames"):

                def get(k, default=None, frame=frame):
                    value = frame.get(k, meta.get(k, default))
                    return value if value is None else _number(value, k)

                W0, H0 = _count(get("w"), "w"), _count(get("h"), "h")
                fx = get("fl_x")
                if fx is None:
                    raise _BadValue("a frame lacks 'fl_x'")
                fy, cx, cy = get("fl_y", fx), get("cx", W0 / 2), get("cy", H0 / 2)
                if not (fx > 0 and fy > 0):
                    raise _BadValue("fl_x and fl_y must be positive")
                intrinsics = dict(width=W0, height=H0, fx=fx, fy=fy, cx=cx, cy=cy)
                size = (width or W0, height or H0) if (width or height) else None
                specs.append((_pose(frame, "transform_matrix"), intrinsics, size))
    except _BadValue as e:
        raise InputError(f"{path}: not a transforms.json or camera_path.json ({e})") from None
    if not specs:
        raise InputError(f"{path}: holds no cameras")
    cams = []
    for c2w, intrinsics, size in specs:
        cam = Camera.from_c2w_opengl(c2w, **intrinsics)
        cams.append(cam.resized(*size) if size else cam)
    return cams


def _entries(meta: dict, key: str) -> list[dict]:
    entries = meta.get(key)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise _BadValue(f"'{key}' must be a list of objects")
    return entries


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _BadValue(f"'{what}' must be a finite number, got {str(value)[:40]}")
    return float(value)


def _count(value, what: str) -> int:
    """A size in pixels: a whole number in 1..MAX_SIDE."""
    from .camera import MAX_SIDE

    n = _number(value, what)
    if n != int(n) or not 1 <= n <= MAX_SIDE:
        raise _BadValue(f"'{what}' must be a whole number of pixels in 1..{MAX_SIDE}, got {str(value)[:40]}")
    return int(n)


def _pose(entry: dict, key: str) -> np.ndarray:
    """A finite, invertible camera-to-world matrix (4x4, or 3x4 or 16 numbers)."""
    value = entry.get(key)
    if value is None:
        raise _BadValue(f"a camera lacks '{key}'")
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):  # numpy's own: the value is no array of numbers
        raise _BadValue(f"'{key}' is not a matrix of numbers") from None
    if m.size == 16:
        m = m.reshape(4, 4)
    if m.shape not in ((4, 4), (3, 4)) or not np.isfinite(m).all():
        raise _BadValue(f"'{key}' must be a finite 4x4 matrix, got shape {m.shape}")
    if abs(np.linalg.det(m[:3, :3])) < 1e-12:
        raise _BadValue(f"'{key}' has a singular rotation")
    return m
