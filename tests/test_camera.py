"""The one camera type: resizing, lens distortion and time through dataset loads, rays against an
independent float64 computation (pinhole, orthographic, OPENCV lens), frame changes, and the
procedural scenes' cameras."""

from __future__ import annotations

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from splat.camera import Camera, pixel_rays, quat_to_rotmat
from splat.datasets import Normalization, load_dataset
from splat.datasets.images import undistortion_grid
from splat.errors import InputError
from splat.scenes import look_at, orbit, still_life_cameras, still_life_orbit


def random_camera(rng, model="pinhole", size=None, **extra) -> Camera:
    """Random size, intrinsics (never zero, off-centre principal point) and pose."""
    width, height = size or (int(rng.integers(20, 90)), int(rng.integers(20, 90)))
    view = np.eye(4)
    view[:3, :3] = quat_to_rotmat(rng.normal(size=4))
    view[:3, 3] = rng.uniform(-2, 2, 3) + [0.0, 0.0, 4.0]
    fx, fy = rng.uniform(0.5, 1.5, 2) * width
    cx, cy = width * rng.uniform(0.3, 0.7), height * rng.uniform(0.3, 0.7)
    return Camera(width, height, fx, fy, cx, cy, view, model=model, **extra)


def points_in_front(rng, cam: Camera, n: int) -> np.ndarray:
    p_cam = np.stack([rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), rng.uniform(1, 5, n)], 1)
    return (p_cam - cam.viewmat[:3, 3]) @ cam.viewmat[:3, :3]  # camera -> world: R^T (p - t)


# ----------------------------------------------------------------------------------------------
# resize


@pytest.mark.parametrize("model", ["pinhole", "ortho"])
def test_resized_camera_projects_to_the_scaled_pixel(seed, model):
    rng = np.random.default_rng(seed)
    for _ in range(5):
        cam = random_camera(rng, model)
        width, height = int(rng.integers(5, 200)), int(rng.integers(5, 200))
        small = cam.resized(width, height)
        p = points_in_front(rng, cam, 50)
        # continuous pixel coordinates (centres at integer + 0.5) scale with the image size
        expected = cam.project(p) * np.array([width / cam.width, height / cam.height])
        np.testing.assert_allclose(small.project(p), expected, rtol=1e-12, atol=1e-9)
        assert (small.width, small.height, small.model, small.viewmat.tolist()) == (
            width,
            height,
            model,
            cam.viewmat.tolist(),
        )


def test_downscaled_pixel_centre_is_the_centre_of_its_block(seed):
    """Trainer.render's and the datasets' downscale by k: small pixel i sees what the centre of
    full-size pixels k i .. k i + k - 1 sees."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 5))
    cam = random_camera(rng, size=(k * int(rng.integers(5, 30)), k * int(rng.integers(5, 30))))
    small = cam.resized(cam.width // k, cam.height // k)
    pixels = torch.stack([torch.arange(small.width), torch.arange(small.width) % small.height], 1)
    o_small, d_small = pixel_rays(pixels, torch.from_numpy(small.K), torch.from_numpy(small.viewmat))
    block_centre = k * (pixels.double() + 0.5)
    o_full, d_full = pixel_rays(block_centre - 0.5, torch.from_numpy(cam.K), torch.from_numpy(cam.viewmat))
    torch.testing.assert_close(d_small, d_full, rtol=0, atol=1e-12)
    torch.testing.assert_close(o_small, o_full, rtol=0, atol=1e-12)


def test_resized_keeps_lens_and_time():
    cam = Camera.look_at((0, -3, 1), (0, 0, 0), width=64, height=48)
    cam = Camera.from_opencv(
        cam.viewmat, K=cam.K, width=64, height=48, lens="OPENCV", distortion=(0.1, -0.02, 0.001, 0.002, 0.0), time=0.3
    )
    half = cam.scaled(0.5)
    assert (half.width, half.height, half.lens, half.distortion, half.time) == (32, 24, "OPENCV", cam.distortion, 0.3)


def test_bad_lens_arguments():
    view = np.eye(4)
    with pytest.raises(InputError, match="lens"):
        Camera(10, 10, 5.0, 5.0, 5.0, 5.0, view, lens="KANNALA")
    with pytest.raises(InputError, match="k1, k2, p1, p2, k3"):
        Camera(10, 10, 5.0, 5.0, 5.0, 5.0, view, lens="OPENCV", distortion=(0.1,))


# ----------------------------------------------------------------------------------------------
# dataset frames carry the camera


def test_lens_distortion_and_time_come_through_a_dataset_load(tmp_path):
    W, H, dist = 32, 24, (-0.05, 0.01, 0.001, -0.002, 0.003)
    (tmp_path / "images").mkdir()
    frames = []
    for k in range(4):
        iio.imwrite(tmp_path / "images" / f"{k}.png", np.full((H, W, 3), 40 * k, dtype=np.uint8))
        c2w = Camera.look_at((3 * math.cos(k), 3 * math.sin(k), 1.0), (0, 0, 0), width=W, height=H).c2w_opengl
        frames.append({"file_path": f"images/{k}.png", "transform_matrix": c2w.tolist(), "time": k / 3})
    meta = {"camera_model": "OPENCV", "fl_x": 30.0, "fl_y": 31.0, "cx": 15.0, "cy": 12.5, "w": W, "h": H}
    meta.update(dict(zip(("k1", "k2", "p1", "p2", "k3"), dist)), frames=frames)
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    for downscale in (1, 2):
        data = load_dataset(tmp_path, downscale=downscale)
        for i, f in enumerate(data.frames):
            cam = data.camera(i)
            assert isinstance(cam, Camera) and cam is f.camera and cam.model == "pinhole"
            assert cam.lens == "OPENCV" and cam.distortion == pytest.approx(dist)
            assert cam.time == pytest.approx(int(f.name[len("images/")]) / 3)
            assert (cam.width, cam.height) == (W // downscale, H // downscale)
            assert (cam.fx, cam.fy, cam.cx, cam.cy) == pytest.approx(
                (30 / downscale, 31 / downscale, 15 / downscale, 12.5 / downscale)
            )
        assert data.is_dynamic


# ----------------------------------------------------------------------------------------------
# rays


def reference_rays(cam: Camera, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 rays by inverting the camera: K^-1 of the pixel centre, then camera-to-world."""
    c2w = np.linalg.inv(cam.viewmat)
    uv1 = np.concatenate([pixels + 0.5, np.ones((len(pixels), 1))], 1)
    xy = (np.linalg.inv(cam.K) @ uv1.T).T[:, :2]
    if cam.model == "ortho":
        plane = np.concatenate([xy, np.zeros((len(xy), 1)), np.ones((len(xy), 1))], 1)
        return (c2w @ plane.T).T[:, :3], np.broadcast_to(c2w[:3, 2], (len(xy), 3))
    d = (c2w[:3, :3] @ np.concatenate([xy, np.ones((len(xy), 1))], 1).T).T
    return np.broadcast_to(c2w[:3, 3], d.shape), d / np.linalg.norm(d, axis=1, keepdims=True)


@pytest.mark.parametrize("model", ["pinhole", "ortho"])
def test_rays_match_an_independent_computation(seed, model):
    rng = np.random.default_rng(seed)
    cams = [random_camera(rng, model) for _ in range(4)]
    for cam in cams:
        ys, xs = np.mgrid[: cam.height, : cam.width]
        ref_o, ref_d = reference_rays(cam, np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64))
        o, d = cam.rays(dtype=torch.float64)
        np.testing.assert_allclose(o.numpy(), ref_o, rtol=0, atol=1e-11)
        np.testing.assert_allclose(d.numpy(), ref_d, rtol=0, atol=1e-12)
        o32, d32 = cam.rays()  # the float32 default
        assert o32.dtype == torch.float32 and torch.allclose(d32.double(), d, atol=1e-5)
        if model == "pinhole":  # the ray through a pixel centre projects back onto it
            p = (o + 2.5 * d).numpy()
            np.testing.assert_allclose(cam.project(p), np.stack([xs.ravel(), ys.ravel()], 1) + 0.5, atol=1e-9)
    # the field trainer's batch: one camera per ray
    pixels = np.stack([rng.integers(0, 20, 64), rng.integers(0, 20, 64)], 1)
    which = rng.integers(0, len(cams), 64)
    Ks = torch.from_numpy(np.stack([cams[i].K for i in which]))
    views = torch.from_numpy(np.stack([cams[i].viewmat for i in which]))
    o, d = pixel_rays(torch.from_numpy(pixels), Ks, views, model)
    for k, i in enumerate(which):
        ref_o, ref_d = reference_rays(cams[i], pixels[k : k + 1].astype(np.float64))
        np.testing.assert_allclose(o[k].numpy(), ref_o[0], rtol=0, atol=1e-11)
        np.testing.assert_allclose(d[k].numpy(), ref_d[0], rtol=0, atol=1e-12)


def test_rays_of_a_distorted_camera_are_those_of_its_undistorted_image(seed):
    """Datasets undistort OPENCV images on load onto the pinhole image of the same K, so a ray
    goes through the pinhole pixel: carried through the lens model (independent float64 OpenCV
    formula), it lands where the undistortion grid samples the distorted file."""
    rng = np.random.default_rng(seed)
    dist = (*rng.uniform(-0.1, 0.1, 2), *rng.uniform(-0.01, 0.01, 2), rng.uniform(-0.02, 0.02))
    cam = random_camera(rng, lens="OPENCV", distortion=dist)
    pinhole = Camera(cam.width, cam.height, cam.fx, cam.fy, cam.cx, cam.cy, cam.viewmat)
    o, d = cam.rays(dtype=torch.float64)
    o_ref, d_ref = pinhole.rays(dtype=torch.float64)
    assert torch.equal(o, o_ref) and torch.equal(d, d_ref)
    d_cam = d.numpy() @ cam.viewmat[:3, :3].T
    x, y = d_cam[:, 0] / d_cam[:, 2], d_cam[:, 1] / d_cam[:, 2]
    k1, k2, p1, p2, k3 = dist
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    grid, _ = undistortion_grid(cam)
    source = (grid[0].double().reshape(-1, 2) + 1) / 2 * torch.tensor([cam.width, cam.height])
    np.testing.assert_allclose(source[:, 0].numpy(), cam.fx * xd + cam.cx, atol=1e-4)
    np.testing.assert_allclose(source[:, 1].numpy(), cam.fy * yd + cam.cy, atol=1e-4)


@pytest.mark.parametrize("model", ["pinhole", "ortho"])
def test_normalised_camera_sees_the_normalised_rays(seed, model):
    rng = np.random.default_rng(seed)
    cam = random_camera(rng, model)
    norm = Normalization(rng.uniform(-1, 1, 3), float(rng.uniform(0.2, 3.0)))
    o, d = cam.rays(dtype=torch.float64)
    o_n, d_n = norm.camera_to_normalized(cam).rays(dtype=torch.float64)
    torch.testing.assert_close(o_n, norm.scale * (o - torch.from_numpy(norm.center)), rtol=0, atol=1e-10)
    torch.testing.assert_close(d_n, d, rtol=0, atol=1e-12)
    back = norm.camera_to_original(norm.camera_to_normalized(cam))
    np.testing.assert_allclose(back.viewmat, cam.viewmat, atol=1e-12)
    assert (back.fx, back.fy) == pytest.approx((cam.fx, cam.fy), rel=1e-12)


# ----------------------------------------------------------------------------------------------
# procedural scenes


def test_procedural_orbit_and_look_at(seed):
    rng = np.random.default_rng(seed)
    n, radius, height, phase = 7, float(rng.uniform(1, 4)), float(rng.uniform(-1, 2)), float(rng.uniform(-3, 3))
    target = rng.uniform(-1, 1, 3)
    views = orbit(n, radius, height, target=tuple(target), phase=phase, dtype=torch.float64).numpy()
    for k, view in enumerate(views):
        a = phase + 2 * math.pi * k / n
        eye = target + [radius * math.cos(a), radius * math.sin(a), height]
        np.testing.assert_allclose(np.linalg.inv(view)[:3, 3], eye, atol=1e-12)
        np.testing.assert_allclose(view, look_at(eye, target, dtype=torch.float64).numpy(), atol=1e-12)
        p = view[:3, :3] @ target + view[:3, 3]
        assert p[2] > 0 and np.allclose(p[:2], 0, atol=1e-12)  # on the optical axis
        assert view[1, :3] @ [0, 0, 1] < 0  # image y (down) points against world up
    cams = still_life_orbit(4, 64, 48)
    assert [type(c) for c in cams] == [Camera] * 4 and (cams[0].width, cams[0].height) == (64, 48)
    np.testing.assert_allclose(cams[0].center, [0.0, -3.2, 1.85], atol=1e-12)  # first looks along +y
    assert cams[0].fov_x == pytest.approx(55.0)
    views, Ks = still_life_cameras(4, 64, 48)  # the same as rasterizer tensors
    assert views.dtype == Ks.dtype == torch.float32 and views.shape == (4, 4, 4) and Ks.shape == (4, 3, 3)
    assert torch.equal(views[2], torch.from_numpy(cams[2].viewmat).float())
    assert torch.equal(Ks[1], torch.from_numpy(cams[1].K).float())
