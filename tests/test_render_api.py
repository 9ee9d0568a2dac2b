"""Python render API: cameras in every convention, scene loading, rendering, trajectories, and
`splat render` producing a dataset that trains again."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import splat
from splat.camera import Camera, quat_to_rotmat, rotmat_to_quat
from splat.gaussians import rgb_to_sh
from splat.ply import save_ply
from splat.scenes import still_life

ROOT = Path(__file__).resolve().parents[1]


def still_life_ply(path: Path) -> Path:
    s = still_life()
    n = s["means"].shape[0]
    save_ply(
        path,
        {
            "means": s["means"],
            "scales": torch.log(s["scales"]),
            "quats": s["quats"],
            "opacities": torch.logit(s["opacities"]),
            "sh0": rgb_to_sh(s["colors"])[:, None, :],
            "shN": torch.zeros(n, 15, 3),
        },
    )
    return path


# ----------------------------------------------------------------------------------------------
# cameras


def test_look_at_projects_known_points():
    cam = Camera.look_at((0, -4, 0), (0, 0, 0), up=(0, 0, 1), width=200, height=100, fov_x=90)
    assert cam.fx == pytest.approx(100.0)
    uv = cam.project(np.array([[0, 0, 0], [1, 0, 0], [0, 0, 1]]))
    assert np.allclose(uv[0], [100, 50])  # the target lands on the principal point
    assert uv[1][0] > 100 and np.isclose(uv[1][1], 50)  # +x world is to the right
    assert uv[2][1] < 50  # +z (up) is up in the image
    assert np.allclose(cam.center, [0, -4, 0])


def test_conventions_agree():
    """The same camera built three ways: look-at, OpenGL c2w (Blender/nerfstudio), OpenCV extrinsics."""
    a = Camera.look_at((1.0, -3.0, 2.0), (0.2, 0.1, 0.0), width=320, height=240, fov_x=60)
    b = Camera.from_c2w_opengl(a.c2w_opengl, width=320, height=240, fov_x=60)
    c = Camera.from_opencv(K=a.K, R=a.viewmat[:3, :3], t=a.viewmat[:3, 3], width=320, height=240)
    for other in (b, c):
        assert np.allclose(other.viewmat, a.viewmat) and np.allclose(other.K, a.K)
    # OpenGL c2w: the camera looks down its -z axis
    assert np.allclose(
        a.c2w_opengl[:3, 2],
        -(np.array([0.2, 0.1, 0.0]) - a.center) / np.linalg.norm(np.array([0.2, 0.1, 0.0]) - a.center),
    )


def test_resize_keeps_the_view():
    cam = Camera.look_at((0, -4, 1), (0, 0, 0), width=320, height=240, fov_x=60)
    half = cam.resized(160, 120)
    p = np.array([[0.3, 0.2, 0.1]])
    assert np.allclose(half.project(p), cam.project(p) / 2)
    assert half.fov_x == pytest.approx(cam.fov_x)


def test_quaternion_helpers_round_trip(gen):
    for k in range(40):
        q = torch.randn(4, generator=gen).double().numpy()
        if k % 2:
            q[0] = 0.0  # 180-degree rotations, where w-pivoted conversions lose the signs
        q /= np.linalg.norm(q)
        R = quat_to_rotmat(q)
        q2 = rotmat_to_quat(R)
        assert np.allclose(quat_to_rotmat(q2), R, atol=1e-9)


def test_bad_camera_arguments():
    with pytest.raises(ValueError, match="size"):
        Camera.look_at((0, -1, 0), (0, 0, 0), width=0, height=10)
    with pytest.raises(ValueError, match="coincide"):
        Camera.look_at((0, 0, 0), (0, 0, 0))
    with pytest.raises(ValueError, match="finite"):
        Camera.from_c2w_opengl(np.full((4, 4), np.nan), width=10, height=10, fx=5)


# ----------------------------------------------------------------------------------------------
# loading and rendering


def test_load_ply_and_render_matches_rasterize(tmp_path):
    scene = splat.load(still_life_ply(tmp_path / "s.ply"))
    assert scene.num_gaussians == still_life()["means"].shape[0] and scene.sh_degree == 3
    cam = Camera.look_at((0, -3.2, 1.6), (0, 0, 0.25), width=96, height=72, fov_x=55)
    out = scene.render(cam, outputs=("rgb", "depth", "alpha"), background=(1, 1, 1))
    assert out["rgb"].shape == (72, 96, 3) and out["depth"].shape == (72, 96, 1) and out["alpha"].shape == (72, 96, 1)
    s = still_life()
    ref, alpha, _ = splat.rasterize(
        **s,
        viewmats=torch.from_numpy(cam.viewmat)[None].float(),
        Ks=torch.from_numpy(cam.K)[None].float(),
        width=96,
        height=72,
        backgrounds=torch.ones(1, 3),
    )
    assert (out["rgb"] - ref[0].clamp(0, 1)).abs().max() < 2e-3  # SH DC round trip of the colours
    hit = out["alpha"][..., 0] > 0.9
    d = out["depth"][..., 0][hit]
    assert hit.float().mean() > 0.3 and (d > 1.5).all() and (d < 6).all()


def test_each_output_is_the_same_whatever_else_is_asked_for(tmp_path):
    """Only the channels asked for are composited (rgb alone skips depth: 2x faster on CPU), and
    each output equals the one rendered together with the others."""
    scene = splat.load(still_life_ply(tmp_path / "s.ply"))
    cam = Camera.look_at((0.3, -3.0, 1.4), (0, 0, 0.25), width=80, height=64, fov_x=50)
    both = scene.render(cam, outputs=("rgb", "depth", "alpha"), background=(0.2, 0.4, 0.6))
    for name in ("rgb", "depth", "alpha"):
        alone = scene.render(cam, outputs=(name,), background=(0.2, 0.4, 0.6))
        assert set(alone) == {name}
        torch.testing.assert_close(alone[name], both[name], rtol=1e-5, atol=1e-5)
    assert both["depth"].abs().max() > 1.0 and both["rgb"].std() > 0.01


def test_batch_render_equals_single(tmp_path):
    scene = splat.load(still_life_ply(tmp_path / "s.ply"))
    cams = splat.trajectories.orbit((0, 0, 0.25), 3.0, 4, height=1.5, width=64, image_height=48)
    batch = scene.render(cams, outputs=("rgb", "alpha"))
    assert batch["rgb"].shape == (4, 48, 64, 3)
    for k, cam in enumerate(cams):
        one = scene.render(cam, outputs=("rgb", "alpha"))
        assert torch.equal(one["rgb"], batch["rgb"][k]) and torch.equal(one["alpha"], batch["alpha"][k])


def test_render_argument_errors(tmp_path):
    scene = splat.load(still_life_ply(tmp_path / "s.ply"))
    cam = Camera.look_at((0, -3, 1), (0, 0, 0), width=32, height=24)
    with pytest.raises(ValueError, match="outputs"):
        scene.render(cam, outputs=("normals",))
    with pytest.raises(ValueError, match="static"):
        scene.render(cam, time=0.5)
    with pytest.raises(ValueError, match="share width"):
        scene.render([cam, cam.resized(16, 12)])


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(ValueError, match=str(tmp_path / "nope.ply")):
        splat.load(tmp_path / "nope.ply")
    (tmp_path / "bad.ply").write_text("not a ply")
    with pytest.raises(ValueError, match="bad.ply"):
        splat.load(tmp_path / "bad.ply")
    with pytest.raises(ValueError, match="not a run folder"):
        splat.load(tmp_path)
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a PLY"):
        splat.load(tmp_path / "x.txt")


# ----------------------------------------------------------------------------------------------
# trajectories


def _max_step(cams):
    centers = np.stack([c.center for c in cams])
    return np.linalg.norm(np.diff(centers, axis=0), axis=1).max()


def test_trajectories_are_continuous():
    ring = splat.trajectories.orbit((0, 0, 0), 4.0, 40, height=1.0)
    assert _max_step(ring) == pytest.approx(2 * 4.0 * math.sin(math.pi / 40), rel=1e-6)
    # training cameras in scrambled order: the interpolated path visits them without jumps
    g = np.random.default_rng(0)
    shuffled = [ring[i] for i in g.permutation(40)]
    path = splat.trajectories.interpolate(shuffled, 400)
    assert _max_step(path) < 3 * 4.0 * 2 * math.pi / 400
    rots = np.stack([c.viewmat[:3, :3] for c in path])
    angles = [math.acos(np.clip((np.trace(a @ b.T) - 1) / 2, -1, 1)) for a, b in zip(rots[:-1], rots[1:])]
    assert max(angles) < math.radians(5)
    spiral = splat.trajectories.spiral(shuffled, 100)
    assert _max_step(spiral) < 1.0
    around = splat.trajectories.orbit_around(shuffled, 30)
    assert np.allclose([np.linalg.norm(c.center[:2]) for c in around], 4.0, atol=1e-6)


def test_path_from_transforms_json(tmp_path):
    cams = splat.trajectories.orbit((0, 0, 0), 3.0, 5, height=1.0, width=80, image_height=60)
    meta = {
        "w": 80,
        "h": 60,
        "fl_x": cams[0].fx,
        "fl_y": cams[0].fy,
        "cx": 40,
        "cy": 30,
        "frames": [{"file_path": f"{k}.png", "transform_matrix": c.c2w_opengl.tolist()} for k, c in enumerate(cams)],
    }
    (tmp_path / "t.json").write_text(json.dumps(meta))
    back = splat.trajectories.from_json(tmp_path / "t.json")
    assert all(np.allclose(a.viewmat, b.viewmat) for a, b in zip(cams, back))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json"):
        splat.trajectories.from_json(tmp_path / "bad.json")


# ----------------------------------------------------------------------------------------------
# splat render


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "splat.cli", *args], capture_output=True, text=True, cwd=ROOT)


def test_render_writes_a_dataset_that_trains_again(tmp_path):
    ply = still_life_ply(tmp_path / "s.ply")
    out = tmp_path / "rendered"
    r = run_cli(
        "render",
        str(ply),
        "--trajectory",
        "orbit",
        "--frames",
        "16",
        "--width",
        "64",
        "--height",
        "48",
        "--out",
        str(out),
        "--depth",
        "--alpha",
        "--video",
    )
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "transforms.json").read_text())
    assert len(meta["frames"]) == 16
    f0 = meta["frames"][0]
    rgb = iio.imread(out / f0["file_path"])
    depth_png = iio.imread(out / f0["depth_file_path"])
    depth = np.load(out / "depth" / "frame_00000.npy")
    mask = iio.imread(out / f0["mask_path"])
    assert rgb.shape == (48, 64, 3) and rgb.std() > 10
    assert depth_png.dtype == np.uint16 and depth.dtype == np.float32
    hit = depth > 0
    assert np.allclose(depth_png[hit] / 1000.0, depth[hit], atol=1e-3)  # millimetres
    assert mask.shape == (48, 64) and (mask[hit] > 0).all()
    assert (out / "video.mp4").stat().st_size > 1000
    # the folder is a nerfstudio dataset: train on it
    run = tmp_path / "run"
    r = run_cli(
        "train",
        str(out),
        "--out",
        str(run),
        "--steps",
        "30",
        "--init-points",
        "500",
        "--sh-degree",
        "0",
        "--eval-every",
        "30",
    )
    assert r.returncode == 0, r.stderr
    assert "nerfstudio scene" in r.stdout and "eval at step 30" in r.stdout


def test_render_errors_are_one_line(tmp_path):
    r = run_cli("render", str(tmp_path / "missing.ply"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "missing.ply" in r.stderr
    ply = still_life_ply(tmp_path / "s.ply")
    r = run_cli("render", str(ply), "--trajectory", "train", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "training cameras" in r.stderr
