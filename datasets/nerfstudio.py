"""nerfstudio `transforms.json`.

Intrinsics `fl_x fl_y cx cy w h` at the top level, overridable per frame; `camera_model` PINHOLE,
OPENCV (k1 k2 [k3] p1 p2) or OPENCV_FISHEYE (k1..k4); frames have `file_path`,
`transform_matrix` (camera-to-world, OpenGL axes) and optionally `mask_path`, `depth_file_path`
and `time`. `ply_file_path` gives initial points. `train_filenames` / `test_filenames` (or `val_`)
choose the split, else every 8th image is held out. `applied_transform` is recorded, not undone:
the poses are used (and exports written) in the transforms.json frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Camera, DatasetError, Frame, check_intrinsics, every_nth_test_split, intrinsic_matrix, pinhole_if_undistorted, viewmat_from_c2w_opengl
from .blender import read_json
from .images import image_size

CAMERA_MODELS = {"PINHOLE": "PINHOLE", "SIMPLE_PINHOLE": "PINHOLE", "OPENCV": "OPENCV", "OPENCV_FISHEYE": "OPENCV_FISHEYE"}


def _intrinsics(entry: dict, default: dict, where: str, image: Path):
    def get(key):
        return entry.get(key, default.get(key))

    model_name = get("camera_model") or "PINHOLE"
    if model_name not in CAMERA_MODELS:
        raise DatasetError(f"{where}: camera_model {model_name!r} is not supported ({', '.join(CAMERA_MODELS)})")
    model = CAMERA_MODELS[model_name]
    try:
        w, h = get("w"), get("h")
        if w is None or h is None:
            w, h = image_size(image)
        fx = float(get("fl_x"))
        fy = float(get("fl_y") if get("fl_y") is not None else fx)
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
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: needs numeric fl_x (and fl_y, cx, cy, w, h, distortion)") from None
    K = check_intrinsics(intrinsic_matrix(fx, fy, cx, cy), w, h, where)
    return (K, w, h, *pinhole_if_undistorted(model, dist))


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


def load_nerfstudio(root: Path, json_path: Path | None = None, test_every: int = 8):
    path = json_path or root / "transforms.json"
    meta = read_json(path)
    raw_frames = meta.get("frames")
    if not isinstance(raw_frames, list) or not raw_frames:
        raise DatasetError(f"{path}: expected a non-empty 'frames' list")
    frames = []
    for k, fr in enumerate(raw_frames):
        where = f"{path} (frame {k})"
        if not isinstance(fr, dict) or "file_path" not in fr or "transform_matrix" not in fr:
            raise DatasetError(f"{where}: needs 'file_path' and 'transform_matrix'")
        image_path = root / fr["file_path"]
        try:
            c2w = np.asarray(fr["transform_matrix"], dtype=np.float64)
        except (TypeError, ValueError):
            raise DatasetError(f"{where}: transform_matrix is not a matrix of numbers") from None
        if c2w.shape not in ((4, 4), (3, 4)) or not np.isfinite(c2w).all():
            raise DatasetError(f"{where}: transform_matrix contains NaN/Inf or is not 4x4")
        K, w, h, model, dist = _intrinsics(fr, meta, where, image_path)
        time = fr.get("time")
        cam = Camera(width=w, height=h, K=K, viewmat=viewmat_from_c2w_opengl(c2w, where), model=model,
                     distortion=dist, time=None if time is None else float(time))  # fmt: skip
        frames.append(Frame(
            name=str(fr["file_path"]), image_path=image_path, camera=cam, split="train",
            mask_path=root / fr["mask_path"] if fr.get("mask_path") else None,
            depth_path=root / fr["depth_file_path"] if fr.get("depth_file_path") else None,
        ))  # fmt: skip

    test_names = meta.get("test_filenames") or meta.get("val_filenames")
    if test_names:
        held_out = {str(Path(n)) for n in test_names}
        for f in frames:
            f.split = "test" if str(Path(f.name)) in held_out else "train"
    else:
        for f, part in zip(frames, every_nth_test_split([f.name for f in frames], test_every)):
            f.split = part
    points = _read_points_ply(root / meta["ply_file_path"]) if meta.get("ply_file_path") else None
    return frames, points
