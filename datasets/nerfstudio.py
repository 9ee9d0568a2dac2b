"""nerfstudio `transforms.json`.

Intrinsics `fl_x fl_y cx cy w h` at the top level, overridable per frame; `camera_model` PINHOLE,
OPENCV (k1 k2 [k3] p1 p2) or OPENCV_FISHEYE (k1..k4); frames have `file_path`,
`transform_matrix` (camera-to-world, OpenGL axes) and optionally `mask_path`, `depth_file_path`
and `time`. `ply_file_path` gives initial points. `train_filenames` / `test_filenames` (or `val_`)
choose the split, else every 8th image is held out. `applied_transform` is recorded, not undone:
the poses are used (and exports written) in the transforms.json frame.

The instant-ngp dialect is read too: no `camera_model` (distortion `k1 k2 p1 p2` at the top level
or per frame means OPENCV, `is_fisheye` OPENCV_FISHEYE), focal lengths as `fl_x`,
`camera_angle_x` (radians) or `x_fov` (degrees), image paths without an extension, and the box
that holds the scene: `aabb_scale`, `scale` and `offset` (instant-ngp maps `p * scale + offset`
into its unit cube; `aabb_scale` widens that cube around its centre) or an explicit `aabb`.
When frames carry `sharpness`, frames are dropped as instant-ngp's loader drops them: those whose
image is absent, and those less sharp than `sharpness_discard_threshold` (default 0) times the
mean of their neighbours (frames in natural file-name order, a window of 3 before and 2 after).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from splat.camera import Camera

from .base import (
    DatasetError,
    Frame,
    LoadedScene,
    every_nth_test_split,
    intrinsic_matrix,
    natural_key,
    pinhole_if_undistorted,
    viewmat_from_c2w_opengl,
)
from .blender import read_json
from .checks import check_intrinsics, dataset_path, inside, name_list, optional_time, relative_path
from .images import image_size

NGP_SCALE, NGP_OFFSET = 0.33, 0.5  # instant-ngp's defaults for `scale` and `offset`
NGP_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tga", ".exr")
SHARPNESS_WINDOW = 3

CAMERA_MODELS = {
    "PINHOLE": "PINHOLE",
    "SIMPLE_PINHOLE": "PINHOLE",
    "OPENCV": "OPENCV",
    "OPENCV_FISHEYE": "OPENCV_FISHEYE",
}


def _intrinsics(entry: dict, default: dict, where: str, image: Path):
    def get(key):
        return entry.get(key, default.get(key))

    model_name = get("camera_model")
    if model_name is None:  # instant-ngp: the lens follows from the coefficients present
        has_distortion = any(get(k) not in (None, 0, 0.0) for k in ("k1", "k2", "k3", "k4", "p1", "p2"))
        model_name = ("OPENCV_FISHEYE" if get("is_fisheye") else "OPENCV") if has_distortion else "PINHOLE"
    if not isinstance(model_name, str) or model_name not in CAMERA_MODELS:
        raise DatasetError(
            f"{where}: camera_model {str(model_name)[:40]!r} is not supported ({', '.join(CAMERA_MODELS)})"
        )
    model = CAMERA_MODELS[model_name]
    try:
        w, h = get("w"), get("h")
        if w is None or h is None:
            w, h = image_size(image)
        fx = _focal(get, "x", float(w))
        fy = _focal(get, "y", float(h))
        fx, fy = (fx or fy), (fy or fx)
        if fx is None:
            raise ValueError
        cx = float(get("cx") if get("cx") is not None else w / 2)
        cy = float(get("cy") if get("cy") is not None else h / 2)
        w, h = int(w), int(h)

        def coef(name):
            v = get(name)
            return 0.0 if v is None else float(v)

        if model == "OPENCV":
            dist = (coef("k1"), coef("k2"), coef("p1"), coef("p2"), coef("k3"))
        elif model == "OPENCV_FISHEYE":
            dist = (coef("k1"), coef("k2"), coef("k3"), coef("k4"))
        else:
            dist = ()
    except (TypeError, ValueError, OverflowError):
        raise DatasetError(f"{where}: needs numeric fl_x (and fl_y, cx, cy, w, h, distortion)") from None
    K = check_intrinsics(intrinsic_matrix(fx, fy, cx, cy), w, h, where)
    return (K, w, h, *pinhole_if_undistorted(model, dist))


def _focal(get, axis: str, size: float) -> float | None:
    """Focal length in pixels from fl_<axis>, camera_angle_<axis> (radians) or <axis>_fov (degrees)."""
    if get(f"fl_{axis}") is not None:
        return float(get(f"fl_{axis}"))
    for key, to_radians in ((f"camera_angle_{axis}", 1.0), (f"{axis}_fov", math.pi / 180.0)):
        if get(key) is not None:
            angle = float(get(key)) * to_radians
            if not 0 < angle < math.pi:
                raise ValueError
            return 0.5 * size / math.tan(0.5 * angle)
    return None


def _resolve_image(path: Path) -> Path:
    """instant-ngp accepts image paths without an extension: the first existing one is used."""
    if path.suffix == "" and not path.exists():
        for suffix in NGP_IMAGE_SUFFIXES:
            if path.with_suffix(suffix).exists():
                return path.with_suffix(suffix)
    return path


def _drop_blurry(root: Path, raw_frames: list, meta: dict, path: Path) -> tuple[list, int]:
    """instant-ngp's rule for frames that carry `sharpness` (see the module docstring)."""
    if not raw_frames or not isinstance(raw_frames[0], dict) or "sharpness" not in raw_frames[0]:
        return raw_frames, 0
    try:
        threshold = float(meta.get("sharpness_discard_threshold", 0.0))
        ordered = sorted(raw_frames, key=lambda fr: natural_key(str(fr.get("file_path", ""))))
        sharpness = [float(fr.get("sharpness", 1.0)) for fr in ordered]
    except (TypeError, ValueError, AttributeError):
        raise DatasetError(f"{path}: 'sharpness' and 'sharpness_discard_threshold' must be numbers") from None
    kept = []
    for i, fr in enumerate(ordered):
        lo, hi = max(0, i - SHARPNESS_WINDOW), min(i + SHARPNESS_WINDOW, len(ordered) - 1)
        mean = sum(sharpness[lo:hi]) / (hi - lo) if hi > lo else sharpness[i]
        image = _resolve_image(dataset_path(fr, "file_path", root, str(path), required=True))
        if image.exists() and sharpness[i] > threshold * mean:
            kept.append(fr)
    return kept, len(raw_frames) - len(kept)


def scene_box(meta: dict, path: Path) -> dict | None:
    """instant-ngp's scene box in transforms.json coordinates: {"center", "half" (of its unit
    cube, the region of interest), "aabb_scale"}, or None when the file gives none of its keys."""
    if not any(k in meta for k in ("aabb_scale", "scale", "offset", "aabb")):
        return None
    try:
        if "aabb" in meta:
            lo, hi = (np.asarray(c, dtype=np.float64).reshape(3) for c in meta["aabb"])
            center, half = (lo + hi) / 2, float(np.max(np.abs(hi - lo))) / 2
        else:
            scale = float(meta.get("scale", NGP_SCALE))
            offset = np.broadcast_to(np.asarray(meta.get("offset", NGP_OFFSET), dtype=np.float64), (3,))
            center, half = (0.5 - offset) / scale, 0.5 / abs(scale)
        aabb_scale = float(meta.get("aabb_scale", 1.0))
    except (TypeError, ValueError, ZeroDivisionError):
        raise DatasetError(f"{path}: aabb_scale, scale, offset and aabb must be numbers") from None
    if not (
        np.isfinite(center).all() and math.isfinite(half) and half > 0 and math.isfinite(aabb_scale) and aabb_scale >= 1
    ):
        raise DatasetError(f"{path}: the scene box (aabb_scale, scale, offset or aabb) is degenerate")
    return {"center": [float(c) for c in center], "half": half, "aabb_scale": aabb_scale}


def _read_points_ply(path: Path):
    from plyfile import PlyData

    try:
        v = PlyData.read(str(path))["vertex"]
        xyz = np.stack([np.asarray(v[k], dtype=np.float32) for k in ("x", "y", "z")], -1)
        names = v.data.dtype.names
        if all(k in names for k in ("red", "green", "blue")):
            rgb = np.stack([np.asarray(v[k]) for k in ("red", "green", "blue")], -1).astype(np.uint8)
        else:
            rgb = np.full_like(xyz, 128, dtype=np.uint8)
    except Exception as e:  # noqa: BLE001
        raise DatasetError(f"{path}: cannot read the initial point cloud ({e.__class__.__name__}: {e})") from None
    keep = np.isfinite(xyz).all(axis=1)
    return xyz[keep], rgb[keep]


def load_nerfstudio(root: Path, json_path: Path | None = None, test_every: int = 8) -> LoadedScene:
    """The frames, the points of `ply_file_path` and the instant-ngp scene box; a note says how many
    frames were dropped for sharpness or missing images."""
    path = json_path or root / "transforms.json"
    meta = read_json(path)
    raw_frames = meta.get("frames")
    if not isinstance(raw_frames, list) or not raw_frames:
        raise DatasetError(f"{path}: expected a non-empty 'frames' list")
    raw_frames, dropped = _drop_blurry(root, raw_frames, meta, path)
    if not raw_frames:
        raise DatasetError(f"{path}: every frame was dropped (missing images or below the sharpness threshold)")
    frames = []
    for k, fr in enumerate(raw_frames):
        where = f"{path} (frame {k})"
        if not isinstance(fr, dict) or "file_path" not in fr or "transform_matrix" not in fr:
            raise DatasetError(f"{where}: needs 'file_path' and 'transform_matrix'")
        file_path = relative_path(fr, "file_path", where, required=True)
        image_path = _resolve_image(inside(root, file_path, where, "file_path"))
        mask_path, depth_path = (
            dataset_path(fr, "mask_path", root, where),
            dataset_path(fr, "depth_file_path", root, where),
        )
        try:
            c2w = np.asarray(fr["transform_matrix"], dtype=np.float64)
        except (TypeError, ValueError):
            raise DatasetError(f"{where}: transform_matrix is not a matrix of numbers") from None
        if c2w.shape not in ((4, 4), (3, 4)) or not np.isfinite(c2w).all():
            raise DatasetError(f"{where}: transform_matrix contains NaN/Inf or is not 4x4")
        K, w, h, lens, dist = _intrinsics(fr, meta, where, image_path)
        view = viewmat_from_c2w_opengl(c2w, where)
        time = optional_time(fr.get("time"), where)
        cam = Camera.from_opencv(view, K=K, width=w, height=h, lens=lens, distortion=dist, time=time)
        frames.append(
            Frame(
                name=file_path,
                image_path=image_path,
                camera=cam,
                split="train",
                mask_path=mask_path,
                depth_path=depth_path,
            )
        )

    key = "test_filenames" if meta.get("test_filenames") else "val_filenames"
    test_names = meta.get(key) and name_list(meta[key], str(path), key)
    if test_names:
        held_out = {str(Path(n)) for n in test_names}
        for f in frames:
            f.split = "test" if str(Path(f.name)) in held_out else "train"
    else:
        for f, part in zip(frames, every_nth_test_split([f.name for f in frames], test_every)):
            f.split = part
    ply_path = dataset_path(meta, "ply_file_path", root, str(path))
    points = _read_points_ply(ply_path) if ply_path else None
    notes = (
        f"dropped {dropped} frame(s) of transforms.json: image missing or blurrier than their neighbours "
        "(instant-ngp's sharpness rule)",
    )
    return LoadedScene(frames, points, bounds=scene_box(meta, path), notes=notes if dropped else ())
