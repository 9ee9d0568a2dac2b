"""Defaults that fit the machine, and where captures without points are initialised (issue 11):
device / preset / downscale selection, capture kinds, frustum initialisation, the instant-ngp
transforms.json dialect, the background-keeping prune rule, appearance compensation, and the
forward-facing LLFF fixture trained to a stated PSNR."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scene_fixtures import c2w_opengl, render_views, to_u8

from splat.datasets import auto_downscale, load_dataset
from splat.datasets.scene_bounds import classify_capture, frustum_depth_range
from splat.scenes import dome_cameras, forward_facing_cameras, still_life, write_llff_dataset
from splat.train.config import PRESETS, preset_config, resolve_device

# ------------------------------------------------------------------------------------------------
# device, preset, downscale


def test_device_auto_follows_cuda_availability():
    assert resolve_device("auto", cuda_available=True) == "cuda"
    assert resolve_device("auto", cuda_available=False) == "cpu"
    assert resolve_device("cpu", cuda_available=True) == "cpu"


def test_preset_auto_is_inria_on_cuda_and_cpu_schedule_on_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    gpu = preset_config("auto")
    assert (gpu.device, gpu.preset, gpu.steps, gpu.max_train_seconds) == ("cuda", "inria", 30_000, 0.0)
    assert gpu.resolution_schedule == [] and gpu.init_points == 100_000
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpu = preset_config("auto")
    assert (cpu.device, cpu.preset) == ("cpu", "cpu")
    assert 0 < cpu.max_train_seconds <= 15 * 60, "a default CPU run must end within a quarter of an hour"
    assert cpu.resolution_schedule == PRESETS["cpu"]["resolution_schedule"]
    # an explicit preset or device wins over "auto"
    assert preset_config("inria", device="cpu").max_train_seconds == 0.0
    assert preset_config("auto", device="cpu", max_train_seconds=60.0).max_train_seconds == 60.0


def test_auto_downscale_rules():
    assert auto_downscale(400, 400, 800) == 1
    assert auto_downscale(720, 1280, 800) == 2  # the beer capture on a CPU
    assert auto_downscale(1920, 1080, 1600) == 2  # INRIA: wider than 1.6k is rescaled
    assert auto_downscale(1600, 1200, 1600) == 1
    assert auto_downscale(4032, 3024, 800, available=[4, 8]) == 8  # LLFF's images_8 rather than decoding 12 MP
    assert auto_downscale(4032, 3024, 1600, available=[4, 8]) == 4


def test_dataset_downscale_zero_chooses_and_says_so(tmp_path):
    views, K = dome_cameras(6, 96, 64)
    from splat.scenes import write_blender_dataset

    write_blender_dataset(still_life(), tmp_path, views, K, 96, 64, n_test=1)
    data = load_dataset(tmp_path, downscale=0, max_side=50)
    assert data.downscale == 2 and data.camera(0).width == 48
    assert any("downscale 2 chosen automatically" in note for note in data.notes)
    assert "--downscale 1" in data.summary()
    full = load_dataset(tmp_path, downscale=0, max_side=800)
    assert full.downscale == 1 and not full.notes


# ------------------------------------------------------------------------------------------------
# capture kinds and initialisation


def _centers_forwards(views):
    centers = np.stack([-v[:3, :3].T @ v[:3, 3] for v in views])
    return centers, np.stack([v[2, :3] for v in views])


def test_capture_kinds():
    dome, _ = dome_cameras(20, 64, 48)
    c, f = _centers_forwards(dome)
    assert classify_capture(c, f, np.array([0.0, 0.0, 0.25])) == "object"
    fwd, _ = forward_facing_cameras(12, 64, 48)
    c, f = _centers_forwards(fwd)
    assert classify_capture(c, f, c.mean(axis=0)) == "forward"
    # outward: the dome's cameras turned around (looking away from the centre)
    flip = np.diag([-1.0, 1.0, -1.0, 1.0])  # rotate each camera 180 degrees about its y axis
    out = np.stack([flip @ v for v in dome])
    c, f = _centers_forwards(out)
    assert classify_capture(c, f, c.mean(axis=0)) == "unbounded"


def test_frustum_depth_range_from_baseline_and_focal():
    centers = np.array([[0.0, 0, 0], [1.0, 0, 0]])
    K = np.array([[100.0, 0, 50], [0, 100.0, 50], [0, 0, 1]])
    near, far = frustum_depth_range(centers, [K, K], [(100, 100), (100, 100)])
    assert near == pytest.approx(1.0 / (2 * math.tan(math.atan2(50, 100))))  # frusta overlap over the baseline
    assert far == pytest.approx(100.0)  # one pixel of parallax over the whole baseline


def _inside_frustum(points: torch.Tensor, cam, near: float, far: float) -> torch.Tensor:
    p = points.double().numpy() @ cam.viewmat[:3, :3].T + cam.viewmat[:3, 3]
    z = p[:, 2]
    u = cam.K[0, 0] * p[:, 0] / z + cam.K[0, 2]
    v = cam.K[1, 1] * p[:, 1] / z + cam.K[1, 2]
    eps = 1e-6
    ok = (z >= near * (1 - eps)) & (z <= far * (1 + eps))
    ok &= (u >= -eps) & (u <= cam.width + eps) & (v >= -eps) & (v <= cam.height + eps)
    return torch.from_numpy(ok)


@pytest.fixture(scope="module")
def llff_fixture(tmp_path_factory):
    root = tmp_path_factory.mktemp("llff")
    views, K = forward_facing_cameras(16, 96, 72)
    write_llff_dataset(still_life(), root, views, K, 96, 72)
    return root


def test_forward_facing_initial_points_lie_in_the_train_frusta(llff_fixture):
    from splat.train.model import random_points

    data = load_dataset(llff_fixture)
    b = data.bounds
    assert b.kind == "forward" and b.source == "poses_bounds.npy"
    raw = np.load(llff_fixture / "poses_bounds.npy")
    s = data.normalization.scale
    assert b.near == pytest.approx(0.9 * raw[:, 15].min() * s) and b.far == pytest.approx(raw[:, 16].max() * s)
    points, colors = random_points(5000, data, torch.Generator().manual_seed(1))
    assert points.shape == (5000, 3) and colors.shape == (5000, 3)
    inside = torch.zeros(5000, dtype=torch.bool)
    for cam in data.train_cameras():
        inside |= _inside_frustum(points, cam, b.near, b.far)
    assert bool(inside.all()), f"{int((~inside).sum())} initial points outside every train camera's frustum"
    # never around the cameras: every point is at least `near` in front of the nearest camera
    centers = torch.from_numpy(np.stack([c.center for c in data.train_cameras()])).float()
    assert torch.cdist(points, centers).min() >= b.near * 0.999
    # the scene scale is the content depth, not the cameras' spread (issue 11's LLFF report)
    assert data.extent == pytest.approx(1.0)
    spread = float(np.linalg.norm(centers.numpy() - centers.numpy().mean(0), axis=1).max())
    assert spread < 0.3 * data.extent


def test_llff_without_bounds_uses_the_frusta(tmp_path, llff_fixture):
    import shutil

    shutil.copytree(llff_fixture, tmp_path / "scene")
    arr = np.load(tmp_path / "scene" / "poses_bounds.npy")
    arr[:, 15:] = 0.0  # some tools write no bounds
    np.save(tmp_path / "scene" / "poses_bounds.npy", arr)
    data = load_dataset(tmp_path / "scene")
    assert data.bounds.kind == "forward" and data.bounds.source == "camera frusta"
    assert 0 < data.bounds.near < data.bounds.far


def test_object_capture_init_keeps_the_inria_cube_within_the_frusta(tmp_path):
    from splat.scenes import write_blender_dataset
    from splat.train.model import random_points

    views, K = dome_cameras(8, 64, 48)
    write_blender_dataset(still_life(), tmp_path, views, K, 64, 48, n_test=1)
    data = load_dataset(tmp_path)
    assert data.bounds.kind == "object" and data.bounds.box_half == pytest.approx(0.33)
    points, _ = random_points(3000, data, torch.Generator().manual_seed(0))
    assert points.abs().max() <= 0.33 + 1e-5
    inside = torch.zeros(3000, dtype=torch.bool)
    for cam in data.train_cameras():
        inside |= _inside_frustum(points, cam, data.bounds.near, data.bounds.far)
    assert bool(inside.all())


# ------------------------------------------------------------------------------------------------
# instant-ngp's transforms.json dialect


def _write_ngp(root, n=10, sharpness=None, missing=(), extra=None):
    views, K = dome_cameras(n, 64, 48)
    K = K.copy()
    K[0, 2], K[1, 2] = 31.0, 25.0
    images = render_views(views, np.broadcast_to(K, (n, 3, 3)), 64, 48, background=(0.0, 0.0, 0.0))[..., :3]
    import imageio.v3 as iio

    (root / "images").mkdir(parents=True)
    frames = []
    for k in range(n):
        if k not in missing:
            iio.imwrite(root / "images" / f"{k:04d}.png", to_u8(images[k]))
        fr = {"file_path": f"images/{k:04d}", "transform_matrix": c2w_opengl(views[k]).tolist()}  # no extension
        if sharpness is not None:
            fr["sharpness"] = sharpness[k]
        frames.append(fr)
    meta = {
        "fl_x": K[0, 0],
        "fl_y": K[1, 1],
        "cx": K[0, 2],
        "cy": K[1, 2],
        "w": 64,
        "h": 48,
        "k1": -0.05,
        "k2": 0.01,
        "p1": 0.001,
        "p2": -0.002,
        "aabb_scale": 4,
        "scale": 0.5,
        "offset": [0.5, 0.5, 0.4],
        "frames": frames,
        **(extra or {}),
    }
    (root / "transforms.json").write_text(json.dumps(meta))
    return views, K


def test_instant_ngp_dialect_loads_with_distortion_and_box(tmp_path):
    _write_ngp(tmp_path)
    data = load_dataset(tmp_path)
    assert data.format == "nerfstudio" and len(data) == 10
    cam = data.frames[0].camera
    assert cam.lens == "OPENCV" and cam.distortion == pytest.approx((-0.05, 0.01, 0.001, -0.002, 0.0))
    rgb, mask = data.image(0)  # undistorted on load (a valid-pixel mask comes with the lens model)
    raw = torch.from_numpy(__import__("imageio.v3").v3.imread(tmp_path / "images" / "0000.png")).float() / 255
    assert rgb.shape == (48, 64, 3) and mask is not None and (rgb - raw).abs().max() > 0.05
    b = data.bounds
    assert b.source == "transforms.json scene box" and b.background_fraction > 0
    # instant-ngp's unit cube: p * 0.5 + (0.5, 0.5, 0.4) in [0, 1]^3 -> centre (0, 0, 0.2), half 1.0
    centre = (np.asarray(b.box_center) / data.normalization.scale) + data.normalization.center
    assert centre == pytest.approx([0.0, 0.0, 0.2], abs=1e-9)
    assert b.box_half / data.normalization.scale == pytest.approx(1.0)


def test_instant_ngp_focal_from_camera_angle(tmp_path):
    views, K = _write_ngp(tmp_path, extra={})
    meta = json.loads((tmp_path / "transforms.json").read_text())
    del meta["fl_x"], meta["fl_y"]
    meta["camera_angle_x"] = 2 * math.atan(32.0 / K[0, 0])
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    data = load_dataset(tmp_path)
    assert data.frames[0].camera.K[0, 0] == pytest.approx(K[0, 0]) and data.frames[0].camera.K[1, 1] == pytest.approx(
        K[0, 0]
    )


def test_instant_ngp_sharpness_drops_blurry_and_missing_frames(tmp_path):
    sharp = [10.0] * 10
    sharp[4] = 1.0  # much blurrier than its neighbours
    _write_ngp(tmp_path, sharpness=sharp, missing=(7,), extra={"sharpness_discard_threshold": 0.5})
    data = load_dataset(tmp_path)
    names = [f.name for f in data.frames]
    assert len(data) == 8 and "images/0004" not in names and "images/0007" not in names
    assert any("dropped 2 frame(s)" in note for note in data.notes)


def test_instant_ngp_sharpness_threshold_zero_keeps_every_present_frame(tmp_path):
    _write_ngp(tmp_path, sharpness=[1.0 + k for k in range(10)], missing=(3,))
    data = load_dataset(tmp_path)
    assert len(data) == 9  # only the missing image goes, as in instant-ngp with its default threshold


# ------------------------------------------------------------------------------------------------
# training: prune rule, appearance, metrics, and the forward-facing fixture


def test_prune_limit_grows_with_distance_beyond_the_scene():
    from splat.train.strategies import DefaultStrategy

    params = {"means": torch.tensor([[0.1, 0.0, 0.0], [0.0, 5.0, 0.0], [30.0, 0.0, 0.0]])}
    limit = DefaultStrategy(prune_scale3d=0.1).size_limit(params, scene_scale=1.1)
    assert limit.tolist() == pytest.approx([0.11, 0.5, 3.0])


def test_appearance_affine_is_identity_at_start_and_learns_exposure():
    from splat.train.appearance import AppearanceCompensation

    comp = AppearanceCompensation(3, torch.device("cpu"))
    img = torch.rand(8, 8, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(comp.apply(img, 1), img)
    target = img * 0.7 + 0.05  # the same view photographed darker
    for _ in range(800):
        loss = (comp.apply(img, 1) - target).abs().mean()
        loss.backward()
        comp.step(0.0)
    assert (comp.apply(img, 1) - target).abs().mean() < 0.01
    assert torch.equal(comp.apply(img, 0), img), "other images keep their own affine"


def test_forward_facing_fixture_trains_to_the_bar(llff_fixture, tmp_path):
    """The procedural LLFF capture (no points, bounds only) with the CPU defaults: 400 steps at
    96x72 reach 24 dB on the held-out views."""
    from splat.train.runs import new_trainer

    cfg = preset_config(
        "cpu", device="cpu", steps=400, max_train_seconds=0.0, log_every=50, resolution_schedule=[[0, 2], [150, 1]]
    )
    trainer = new_trainer(str(llff_fixture), tmp_path / "run", cfg)
    assert trainer.data.bounds.kind == "forward"
    result = trainer.train()
    assert result["eval"]["psnr"] >= 24.0, result
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [x for x in lines if "tile_pairs" in x]
    assert logged and all(x["tile_pairs"] > 0 and x["steps_per_second"] > 0 for x in logged)


@pytest.mark.parametrize("model", ["3d", "motion", "4d", "field"])
def test_max_seconds_ends_every_model(tmp_path, model):
    """`--max-seconds` stops 3D, 4D and field runs alike (evaluated and checkpointed), and the
    start-up line states the budget."""
    import subprocess
    import sys

    from splat.scenes import write_blender_dataset, write_dnerf_dataset

    data = tmp_path / "data"
    if model in ("motion", "4d"):
        write_dnerf_dataset(data, n_train=8, n_test=2, width=48, height=36)
    else:
        views, K = dome_cameras(8, 48, 36)
        write_blender_dataset(still_life(), data, views, K, 48, 36, n_test=2)
    extra = (
        ["--samples-per-step", "4096", "--grid-resolution", "32", "--log2-hashmap-size", "14"]
        if model == "field"
        else []
    )
    run = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "splat.cli",
            "train",
            str(data),
            "--out",
            str(run),
            "--model",
            model,
            "--device",
            "cpu",
            "--steps",
            "100000",
            "--max-seconds",
            "3",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "plan: cpu" in proc.stdout and "3 s of training" in proc.stdout
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    final = [r for r in records if "eval" in r][-1]
    assert 3.0 <= final["train_seconds"] < 30.0 and final["step"] < 100_000
    assert list((run / "checkpoints").glob("step_*.pt"))


# ------------------------------------------------------------------------------------------------
# background fill for captures with sparse points


def test_background_fill_lies_on_uncovered_pixels_beyond_the_points(tmp_path):
    """Each fill point sits on the ray of a pixel of some training image whose 16x16 block no
    sparse point covers, at 1 to FILL_BEYOND times the depth of the farthest of the NEIGHBOURS
    sparse points that project nearest to that pixel, and has that pixel's colour."""
    from scene_fixtures import write_colmap

    from splat.train.model import BLOCK, FILL_BEYOND, NEIGHBOURS, background_fill

    write_colmap(tmp_path, n=6, models=("PINHOLE",), n_points=60)
    data = load_dataset(tmp_path)
    fill, colors = background_fill(300, data, data.points, torch.Generator().manual_seed(3))
    assert fill.shape == (300, 3) and colors.shape == (300, 3)
    found = torch.zeros(300, dtype=torch.bool)
    for index in data.train_indices:
        cam = data.frames[index].camera
        view, K = torch.from_numpy(cam.viewmat).float(), torch.from_numpy(cam.K).float()
        rgb, _ = data.image(index)

        def project(p, view=view, K=K):
            q = p @ view[:3, :3].T + view[:3, 3]
            return (q[:, :2] / q[:, 2:]) @ K[:2, :2].T + K[:2, 2], q[:, 2]

        uv_pts, z_pts = project(data.points)
        seen = (z_pts > 0) & (uv_pts >= 0).all(1) & (uv_pts[:, 0] < cam.width) & (uv_pts[:, 1] < cam.height)
        covered = {(int(u // BLOCK), int(v // BLOCK)) for u, v in uv_pts[seen].tolist()}
        uv, z = project(fill)
        inside = (z > 0) & (uv >= 0).all(1) & (uv[:, 0] < cam.width) & (uv[:, 1] < cam.height)
        for k in inside.nonzero()[:, 0].tolist():
            u, v = uv[k].tolist()
            pixel_centre = torch.tensor([int(u) + 0.5, int(v) + 0.5])
            nearest = (uv_pts[seen] - pixel_centre).norm(dim=1).argsort()[:NEIGHBOURS]
            local_far = float(z_pts[seen][nearest].max())
            if (int(u // BLOCK), int(v // BLOCK)) in covered or not (
                local_far * 0.999 <= z[k] <= FILL_BEYOND * local_far * 1.001
            ):
                continue
            if torch.allclose(rgb[int(v), int(u)], colors[k], atol=1e-6):
                found[k] = True
    assert found.all(), f"{int((~found).sum())} of 300 fill points match no uncovered pixel of a training image"
