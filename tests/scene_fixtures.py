"""Small posed-image datasets written by the tests, in every supported format.

One procedural scene (the still life, rendered by splat itself) is photographed by a ring of
cameras; each writer stores the same photographs and poses in its format's conventions, so a
loader that gets a convention wrong cannot reproduce the photographs from the loaded cameras.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

import splat
from splat.scenes import look_at, still_life
from splat.scenes.dataset import c2w_opengl, write_blender_dataset

WIDTH, HEIGHT = 64, 48


def ring_cameras(n: int, width: int = WIDTH, height: int = HEIGHT, seed: int = 0):
    """n cameras around the still life (viewmats (n,4,4) float64 OpenCV, Ks (n,3,3) float64)."""
    g = np.random.default_rng(seed)
    views, Ks = [], []
    for k in range(n):
        a = 2 * math.pi * k / n
        eye = (3.0 * math.cos(a), 3.0 * math.sin(a), 1.4 + 0.3 * g.uniform(-1, 1))
        views.append(look_at(eye, (0.0, 0.0, 0.25), dtype=torch.float64).numpy())
        f = 0.9 * width * (1 + 0.05 * g.uniform(-1, 1))
        Ks.append(np.array([[f, 0, width / 2 + g.uniform(-2, 2)], [0, f, height / 2 + g.uniform(-2, 2)], [0, 0, 1.0]]))
    return np.stack(views), np.stack(Ks)


def render_views(views: np.ndarray, Ks: np.ndarray, width=WIDTH, height=HEIGHT, background=None):
    """RGBA renders (n, H, W, 4) float32 of the still life."""
    scene = still_life()
    bg = (
        None if background is None else torch.tensor(background, dtype=torch.float32).expand(len(views), 3).contiguous()
    )
    rgb, alpha, _ = splat.rasterize(
        **scene,
        viewmats=torch.from_numpy(views).float(),
        Ks=torch.from_numpy(Ks).float(),
        width=width,
        height=height,
        backgrounds=bg,
    )
    return torch.cat([rgb, alpha], -1).clamp(0, 1).numpy()


def to_u8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def write_blender(root: Path, n_train=12, n_test=4, seed=0):
    """Blender layout (the library's own writer); cameras share one centred focal length."""
    views, Ks = ring_cameras(n_train + n_test, seed=seed)
    f = 0.9 * WIDTH
    K = np.array([[f, 0, WIDTH / 2], [0, f, HEIGHT / 2], [0, 0, 1.0]])
    write_blender_dataset(still_life(), root, views, K, WIDTH, HEIGHT, n_test)
    return views, np.broadcast_to(K, Ks.shape).copy()


def write_nerfstudio(root: Path, n=10, distortion=None, per_frame_intrinsics=True, seed=0):
    """nerfstudio layout with top-level intrinsics, optional per-frame overrides and OPENCV lens."""
    views, Ks = ring_cameras(n, seed=seed)
    if not per_frame_intrinsics:
        Ks[:] = Ks[0]
    images = render_views(views, Ks, background=(0.0, 0.0, 0.0))[..., :3]
    meta = {
        "w": WIDTH,
        "h": HEIGHT,
        "fl_x": Ks[0, 0, 0],
        "fl_y": Ks[0, 1, 1],
        "cx": Ks[0, 0, 2],
        "cy": Ks[0, 1, 2],
        "camera_model": "OPENCV" if distortion else "PINHOLE",
        "frames": [],
    }
    if distortion:
        meta.update(distortion)
    (root / "images").mkdir(parents=True, exist_ok=True)
    stored = []
    for k in range(n):
        img = images[k]
        if distortion:
            img = apply_distortion(img, Ks[k], distortion)
        stored.append(img)
        iio.imwrite(root / "images" / f"frame_{k:03d}.png", to_u8(img))
        frame = {"file_path": f"images/frame_{k:03d}.png", "transform_matrix": c2w_opengl(views[k]).tolist()}
        if per_frame_intrinsics:
            frame.update(fl_x=Ks[k, 0, 0], fl_y=Ks[k, 1, 1], cx=Ks[k, 0, 2], cy=Ks[k, 1, 2])
        meta["frames"].append(frame)
    (root / "transforms.json").write_text(json.dumps(meta))
    return views, Ks, images, np.stack(stored)


def apply_distortion(img: np.ndarray, K: np.ndarray, d: dict) -> np.ndarray:
    """Photograph through an OPENCV lens: distorted pixel u_d shows the pinhole image at undistort(u_d)
    (inverted by fixed-point iteration, then bilinear sampling)."""
    H, W = img.shape[:2]
    v, u = np.meshgrid(np.arange(H) + 0.5, np.arange(W) + 0.5, indexing="ij")
    xd = (u - K[0, 2]) / K[0, 0]
    yd = (v - K[1, 2]) / K[1, 1]
    x, y = xd.copy(), yd.copy()
    k1, k2, p1, p2 = d.get("k1", 0), d.get("k2", 0), d.get("p1", 0), d.get("p2", 0)
    for _ in range(50):
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2 * r2
        dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        x = (xd - dx) / radial
        y = (yd - dy) / radial
    us = x * K[0, 0] + K[0, 2] - 0.5
    vs = y * K[1, 1] + K[1, 2] - 0.5
    grid = torch.from_numpy(np.stack([2 * (us + 0.5) / W - 1, 2 * (vs + 0.5) / H - 1], -1))[None].float()
    src = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    out = torch.nn.functional.grid_sample(src, grid, align_corners=False, padding_mode="border")
    return out[0].permute(1, 2, 0).numpy()


# --------------------------------------------------------------------------------------------
# COLMAP
# --------------------------------------------------------------------------------------------

MODEL_IDS = {"SIMPLE_PINHOLE": 0, "PINHOLE": 1, "SIMPLE_RADIAL": 2, "RADIAL": 3, "OPENCV": 4}


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """wxyz unit quaternion of a rotation matrix (Shepperd's method), w >= 0."""
    tr = np.trace(R)
    if tr > 0:
        s = 2 * math.sqrt(tr + 1)
        q = [s / 4, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = 2 * math.sqrt(1 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [(R[2, 1] - R[1, 2]) / s, s / 4, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s]
    elif R[1, 1] > R[2, 2]:
        s = 2 * math.sqrt(1 + R[1, 1] - R[0, 0] - R[2, 2])
        q = [(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, s / 4, (R[1, 2] + R[2, 1]) / s]
    else:
        s = 2 * math.sqrt(1 + R[2, 2] - R[0, 0] - R[1, 1])
        q = [(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, s / 4]
    q = np.asarray(q)
    return -q if q[0] < 0 else q


def colmap_params(model: str, K: np.ndarray) -> list[float]:
    f, cx, cy = K[0, 0], K[0, 2], K[1, 2]
    return {
        "SIMPLE_PINHOLE": [f, cx, cy],
        "PINHOLE": [K[0, 0], K[1, 1], cx, cy],
        "SIMPLE_RADIAL": [f, cx, cy, 0.0],
        "RADIAL": [f, cx, cy, 0.0, 0.0],
        "OPENCV": [K[0, 0], K[1, 1], cx, cy, 0.0, 0.0, 0.0, 0.0],
    }[model]


def write_colmap(
    root: Path,
    n=10,
    models=("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV"),
    binary=True,
    n_points=200,
    seed=0,
):
    """COLMAP model with one camera per image (cycling through `models`, zero distortion so the
    stored images stay pinhole) and points sampled from the scene."""
    views, Ks = ring_cameras(n, seed=seed)
    Ks_used = Ks.copy()  # models with one focal length get fy = fx
    for k in range(n):
        if models[k % len(models)] in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
            Ks_used[k, 1, 1] = Ks_used[k, 0, 0]
    images = render_views(views, Ks_used, background=(0.0, 0.0, 0.0))[..., :3]
    sparse = root / "sparse" / "0"
    sparse.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    for k in range(n):
        iio.imwrite(root / "images" / f"{k:04d}.png", to_u8(images[k]))
    scene = still_life()
    g = np.random.default_rng(seed)
    pick = g.choice(scene["means"].shape[0], n_points, replace=False)
    pts = scene["means"][pick].numpy().astype(np.float64)
    rgb = to_u8(scene["colors"][pick].numpy())
    cams = [(k + 1, models[k % len(models)], colmap_params(models[k % len(models)], Ks_used[k])) for k in range(n)]
    if binary:
        with open(sparse / "cameras.bin", "wb") as f:
            f.write(struct.pack("<Q", n))
            for cid, m, params in cams:
                f.write(
                    struct.pack("<iiQQ", cid, MODEL_IDS[m], WIDTH, HEIGHT) + struct.pack(f"<{len(params)}d", *params)
                )
        with open(sparse / "images.bin", "wb") as f:
            f.write(struct.pack("<Q", n))
            for k in range(n):
                q = rotmat_to_qvec(views[k][:3, :3])
                f.write(struct.pack("<i4d3di", k + 1, *q, *views[k][:3, 3], k + 1) + f"{k:04d}.png".encode() + b"\0")
                f.write(struct.pack("<Q", 1) + struct.pack("<ddq", 1.0, 2.0, -1))
        with open(sparse / "points3D.bin", "wb") as f:
            f.write(struct.pack("<Q", n_points))
            for j in range(n_points):
                f.write(
                    struct.pack("<Q3d3Bd", j + 1, *pts[j], *rgb[j], 0.5)
                    + struct.pack("<Q", 1)
                    + struct.pack("<ii", 1, 0)
                )
    else:
        lines = ["# Camera list"] + [
            f"{cid} {m} {WIDTH} {HEIGHT} " + " ".join(repr(float(p)) for p in params) for cid, m, params in cams
        ]
        (sparse / "cameras.txt").write_text("\n".join(lines) + "\n")
        lines = ["# Image list"]
        for k in range(n):
            q = rotmat_to_qvec(views[k][:3, :3])
            t = views[k][:3, 3]
            lines += [f"{k + 1} " + " ".join(repr(float(v)) for v in (*q, *t)) + f" {k + 1} {k:04d}.png", "1.0 2.0 -1"]
        (sparse / "images.txt").write_text("\n".join(lines) + "\n")
        lines = ["# 3D points"] + [
            f"{j + 1} "
            + " ".join(repr(float(v)) for v in pts[j])
            + " "
            + " ".join(str(int(c)) for c in rgb[j])
            + " 0.5 1 0"
            for j in range(n_points)
        ]
        (sparse / "points3D.txt").write_text("\n".join(lines) + "\n")
    return views, Ks_used, images, pts


def write_llff(root: Path, n=8, seed=0):
    views, Ks = ring_cameras(n, seed=seed)
    f = 0.9 * WIDTH
    Ks[:] = np.array([[f, 0, WIDTH / 2], [0, f, HEIGHT / 2], [0, 0, 1.0]])
    images = render_views(views, Ks, background=(0.0, 0.0, 0.0))[..., :3]
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(n):
        iio.imwrite(root / "images" / f"img_{k:03d}.png", to_u8(images[k]))
        c2w = c2w_opengl(views[k])
        # LLFF stores the rotation columns as (down, right, back) = (-y_gl, x_gl, z_gl)
        m = np.concatenate(
            [-c2w[:3, 1:2], c2w[:3, 0:1], c2w[:3, 2:3], c2w[:3, 3:4], np.array([[HEIGHT], [WIDTH], [f]])], 1
        )
        rows.append(np.concatenate([m.ravel(), [0.5, 10.0]]))
    np.save(root / "poses_bounds.npy", np.stack(rows))
    return views, Ks, images
