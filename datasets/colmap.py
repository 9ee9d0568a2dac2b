"""COLMAP sparse models (`sparse/0/{cameras,images,points3D}.{bin,txt}` + `images/`).

Per-image cameras; SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV and OPENCV_FISHEYE
(distorted models are undistorted on load). Poses are world-to-camera (qw qx qy qz, t), OpenCV
axes. Initial points come from points3D.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from splat.camera import Camera, quat_to_rotmat

from .base import (
    DatasetError,
    Frame,
    LoadedScene,
    check_pose,
    every_nth_test_split,
    intrinsic_matrix,
    pinhole_if_undistorted,
)
from .checks import check_intrinsics, inside

# model id -> (name, number of params)
MODELS = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
}
PARAM_COUNT = {name: n for name, n in MODELS.values()}


def find_model_dir(root: Path) -> Path | None:
    for candidate in (root / "sparse" / "0", root / "sparse", root):
        if (candidate / "cameras.bin").exists() or (candidate / "cameras.txt").exists():
            return candidate
    return None


def _read(path: Path, binary: bool = False):
    try:
        return path.read_bytes() if binary else path.read_text(errors="replace")
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror})") from None


class _Reader:
    """Bounds-checked little-endian reads from a binary COLMAP file."""

    def __init__(self, path: Path):
        self.path = path
        self.data = _read(path, binary=True)
        self.pos = 0

    def read(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise DatasetError(f"{self.path}: truncated COLMAP file (ends at byte {len(self.data)})")
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return values

    def string(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise DatasetError(f"{self.path}: truncated COLMAP file (unterminated image name)")
        s = self.data[self.pos : end].decode("utf-8", errors="replace")
        self.pos = end + 1
        return s

    def skip(self, nbytes: int) -> None:
        if self.pos + nbytes > len(self.data):
            raise DatasetError(f"{self.path}: truncated COLMAP file (ends at byte {len(self.data)})")
        self.pos += nbytes


def _camera_from_params(model: str, width: int, height: int, params, where: str):
    if model not in PARAM_COUNT or len(params) != PARAM_COUNT[model]:
        raise DatasetError(f"{where}: camera model {model} with {len(params)} parameters is malformed")
    p = [float(v) for v in params]
    if model == "SIMPLE_PINHOLE":
        return intrinsic_matrix(p[0], p[0], p[1], p[2]), "PINHOLE", ()
    if model == "PINHOLE":
        return intrinsic_matrix(*p[:4]), "PINHOLE", ()
    if model == "SIMPLE_RADIAL":
        return intrinsic_matrix(p[0], p[0], p[1], p[2]), "SIMPLE_RADIAL", (p[3],)
    if model == "RADIAL":
        return intrinsic_matrix(p[0], p[0], p[1], p[2]), "RADIAL", (p[3], p[4])
    if model == "OPENCV":
        return intrinsic_matrix(*p[:4]), "OPENCV", (p[4], p[5], p[6], p[7], 0.0)
    if model == "OPENCV_FISHEYE":
        return intrinsic_matrix(*p[:4]), "OPENCV_FISHEYE", tuple(p[4:8])
    raise DatasetError(
        f"{where}: camera model {model} is not supported (use PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV, OPENCV_FISHEYE)"
    )


def read_cameras(model_dir: Path) -> dict[int, tuple]:
    """camera_id -> (K, distortion model, distortion params, width, height)."""
    out = {}
    binary = model_dir / "cameras.bin"
    if binary.exists():
        r = _Reader(binary)
        (count,) = r.read("Q")
        for _ in range(count):
            cam_id, model_id, width, height = r.read("iiQQ")
            if model_id not in MODELS:
                raise DatasetError(f"{binary}: unknown camera model id {model_id}")
            name, n = MODELS[model_id]
            params = r.read("d" * n)
            K, model, dist = _camera_from_params(name, width, height, params, str(binary))
            out[cam_id] = (K, *pinhole_if_undistorted(model, dist), int(width), int(height))
        return out
    text = model_dir / "cameras.txt"
    for lineno, line in enumerate(_read(text).splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        try:
            cam_id, name, width, height = int(parts[0]), parts[1], int(parts[2]), int(parts[3])
            params = [float(v) for v in parts[4:]]
        except (ValueError, IndexError):
            raise DatasetError(f"{text}:{lineno}: malformed camera line") from None
        K, model, dist = _camera_from_params(name, width, height, params, f"{text}:{lineno}")
        out[cam_id] = (K, *pinhole_if_undistorted(model, dist), width, height)
    return out


def _pose(q, t, where: str) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    if not np.isfinite(q).all() or not np.isfinite(t).all() or np.linalg.norm(q) < 1e-12:
        raise DatasetError(f"{where}: pose contains NaN/Inf or a zero quaternion")
    view = np.eye(4)
    view[:3, :3] = quat_to_rotmat(q)  # COLMAP qvec is wxyz
    view[:3, 3] = t
    return check_pose(view, where)


def read_images(model_dir: Path) -> list[tuple[str, int, np.ndarray, int]]:
    """[(image name, camera_id, viewmat, image_id)] in file order."""
    out = []
    binary = model_dir / "images.bin"
    if binary.exists():
        r = _Reader(binary)
        (count,) = r.read("Q")
        for _ in range(count):
            values = r.read("idddddddi")
            name = r.string()
            (n2d,) = r.read("Q")
            r.skip(n2d * 24)
            out.append((name, values[8], _pose(values[1:5], values[5:8], f"{binary} (image {name})"), values[0]))
        return out
    text = model_dir / "images.txt"
    lines = [ln for ln in _read(text).splitlines() if not ln.startswith("#")]
    # pairs of lines: the image line, then its 2D points (possibly empty)
    for k in range(0, len(lines), 2):
        parts = lines[k].split()
        if not parts:
            continue
        try:
            q = [float(v) for v in parts[1:5]]
            t = [float(v) for v in parts[5:8]]
            image_id, cam_id, name = int(parts[0]), int(parts[8]), " ".join(parts[9:])
        except (ValueError, IndexError):
            raise DatasetError(f"{text}: malformed image line: {lines[k][:80]!r}") from None
        if not name:
            raise DatasetError(f"{text}: image line without a file name: {lines[k][:80]!r}")
        out.append((name, cam_id, _pose(q, t, f"{text} (image {name})"), image_id))
    return out


def read_points(model_dir: Path) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]] | None:
    """(xyz (P, 3) float32, rgb (P, 3) uint8, tracks: per point the ids of the images that saw it)
    or None when the model has no points file."""
    binary = model_dir / "points3D.bin"
    text = model_dir / "points3D.txt"
    xyz, rgb, tracks = [], [], []
    if binary.exists():
        r = _Reader(binary)
        (count,) = r.read("Q")
        for _ in range(count):
            values = r.read("QdddBBBd")
            xyz.append(values[1:4])
            rgb.append(values[4:7])
            (track,) = r.read("Q")
            start = r.pos
            r.skip(track * 8)
            tracks.append(np.frombuffer(r.data, dtype="<u4", count=2 * track, offset=start)[0::2])
    elif text.exists():
        for lineno, line in enumerate(_read(text).splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split()
            try:
                point, colour = [float(v) for v in parts[1:4]], [int(v) for v in parts[4:7]]
                track = [int(v) for v in parts[8::2]]
            except ValueError:
                raise DatasetError(f"{text}:{lineno}: malformed point line") from None
            if len(point) != 3 or len(colour) != 3 or not all(0 <= c <= 255 for c in colour):
                raise DatasetError(f"{text}:{lineno}: a point needs X Y Z and an R G B colour in 0..255")
            if not all(0 <= i < 2**32 for i in track):
                raise DatasetError(f"{text}:{lineno}: image ids must be in 0..2^32-1")
            xyz.append(point)
            rgb.append(colour)
            tracks.append(np.array(track, dtype=np.uint32))
    else:
        return None
    if not xyz:
        return None
    xyz_arr = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    rgb_arr = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3)
    keep = np.isfinite(xyz_arr).all(axis=1)
    return xyz_arr[keep], rgb_arr[keep], [t for t, k in zip(tracks, keep) if k]


def load_colmap(root: Path, images_dir: Path, test_every: int = 8) -> LoadedScene:
    """The frames, sparse points and observers of a COLMAP model under `root`, images read from
    `images_dir`: observers[p] are the indices (into frames) of the images that saw sparse point p."""
    model_dir = find_model_dir(root)
    if model_dir is None:
        raise DatasetError(f"{root}: no COLMAP model (sparse/0/cameras.bin or .txt)")
    for stem in ("cameras", "images"):
        if not (model_dir / f"{stem}.bin").exists() and not (model_dir / f"{stem}.txt").exists():
            raise DatasetError(f"{model_dir}: {stem}.bin / {stem}.txt is missing")
    cameras = read_cameras(model_dir)
    images = sorted(read_images(model_dir), key=lambda x: x[0])
    if not images:
        raise DatasetError(f"{model_dir}: the model has no registered images")
    split = every_nth_test_split([name for name, *_ in images], test_every)
    frames = []
    for (name, cam_id, view, _), part in zip(images, split):
        if cam_id not in cameras:
            raise DatasetError(f"{model_dir}: image {name} refers to camera {cam_id}, which is not defined")
        K, lens, dist, width, height = cameras[cam_id]
        check_intrinsics(K, width, height, f"{model_dir} (camera {cam_id})")
        cam = Camera.from_opencv(view, K=K, width=width, height=height, lens=lens, distortion=dist)
        image_path = inside(images_dir, name, f"{model_dir} (image {name})", "name")
        frames.append(Frame(name=name, image_path=image_path, camera=cam, split=part))
    sparse = read_points(model_dir)
    if sparse is None:
        return LoadedScene(frames)
    xyz, rgb, tracks = sparse
    index = {image_id: k for k, (*_, image_id) in enumerate(images)}
    observers = [[index[i] for i in track.tolist() if i in index] for track in tracks]
    return LoadedScene(frames, (xyz, rgb), observers)
