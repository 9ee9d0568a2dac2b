"""Data side of dynamic (4D) scenes: the procedural dynamic scene, the D-NeRF and multi-view video
writers, the multi-view video loader and its bad-input cases (one-line DatasetError naming the file)."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

import splat
from splat.datasets import DatasetError, detect_format, load_dataset
from splat.rotation import quat_to_rotmat
from splat.scenes import (
    dome_cameras,
    dynamic_scene_at,
    dynamic_scene_objects,
    still_life,
    write_blender_dataset,
    write_dnerf_dataset,
    write_multiview_video_dataset,
)
from splat.train.losses import psnr

W, H = 64, 48


def assert_rerenders(data, indices, min_psnr=35.0):
    """Render the dynamic scene at each frame's time through the loaded (normalised) camera: a wrong
    pose, focal, principal point or time would not reproduce the photograph."""
    s, c = data.normalization.scale, torch.from_numpy(data.normalization.center).float()
    for i in indices:
        cam = data.camera(i)
        scene = dynamic_scene_at(cam.time)
        scene["means"] = (scene["means"] - c) * s
        scene["scales"] = scene["scales"] * s
        rgb, _, _ = splat.rasterize(
            **scene,
            viewmats=data.viewmat(i)[None],
            Ks=data.K(i)[None],
            width=cam.width,
            height=cam.height,
            backgrounds=torch.zeros(1, 3),
        )
        photo, _ = data.image(i, torch.zeros(3))
        p = psnr(rgb[0], photo, min_mse=1e-12)
        assert p > min_psnr, f"frame {data.frames[i].name}: re-renders the photo at only {p:.1f} dB"


# ----------------------------------------------------------------------------------------------
# the procedural dynamic scene
# ----------------------------------------------------------------------------------------------


def test_dynamic_scene_is_deterministic_with_fixed_layout():
    a, b = dynamic_scene_at(0.37), dynamic_scene_at(0.37)
    for k in ("means", "quats", "scales", "opacities", "colors"):
        assert torch.equal(a[k], b[k]), k
        assert a[k].dtype == torch.float32 and a[k].shape[0] == a["means"].shape[0]
    assert a["colors"].shape[1] == 3 and 10_000 <= a["means"].shape[0] <= 20_000
    assert not torch.equal(dynamic_scene_at(0.37, seed=1)["colors"], a["colors"])  # grain follows the seed
    objects = dynamic_scene_objects()
    assert sum(s.stop - s.start for s in objects.values()) == a["means"].shape[0]
    for t in (0.0, 1.0):  # same rows at every time; sizes and colours do not change
        other = dynamic_scene_at(t)
        assert torch.equal(other["scales"], a["scales"]) and torch.equal(other["colors"], a["colors"])
    with pytest.raises(ValueError):
        dynamic_scene_at(1.5)


def test_dynamic_scene_is_smooth_in_time():
    for t in (0.0, 0.2, 0.3, 0.45, 0.6, 0.75, 0.999):
        a, b = dynamic_scene_at(t), dynamic_scene_at(t + 1e-3)
        assert (a["means"] - b["means"]).abs().max() < 1e-2, t
        assert (a["opacities"] - b["opacities"]).abs().max() < 1e-2, t
        # rotations: compare matrices (q and -q are the same rotation)
        assert (quat_to_rotmat(a["quats"].double()) - quat_to_rotmat(b["quats"].double())).abs().max() < 1e-2, t


def test_objects_move_rotate_appear_and_disappear():
    objects = dynamic_scene_objects()
    start, end = dynamic_scene_at(0.0), dynamic_scene_at(1.0)
    moved = (end["means"] - start["means"]).norm(dim=-1)
    assert moved[objects["floor"]].max() == 0
    for name in ("sphere", "cube", "torus", "disappearing"):
        assert moved[objects[name]].mean() > 0.1, name
    mid = dynamic_scene_at(0.25)["means"]
    assert mid[objects["sphere"], 2].min() > start["means"][objects["sphere"], 2].min() + 0.2  # bounces up

    # the cube turns about its vertical axis: positions and orientations rotate together
    t = 0.4
    angle = math.pi * t
    Rz = torch.tensor(
        [[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]], dtype=torch.float64
    )
    cube = objects["cube"]
    now = dynamic_scene_at(t)
    R0, Rt = quat_to_rotmat(start["quats"][cube].double()), quat_to_rotmat(now["quats"][cube].double())
    assert torch.allclose(Rt, Rz @ R0, atol=1e-5)
    center = start["means"][cube].double().mean(0)
    assert torch.allclose(
        now["means"][cube].double() - center, (start["means"][cube].double() - center) @ Rz.T, atol=1e-5
    )
    assert (now["means"][cube, 2] - start["means"][cube, 2]).abs().max() < 1e-6

    o0, o1 = start["opacities"], end["opacities"]
    assert o0[objects["appearing"]].max() == 0 and o1[objects["appearing"]].min() > 0.5
    assert o0[objects["disappearing"]].min() > 0.5 and o1[objects["disappearing"]].max() == 0
    assert 0 < dynamic_scene_at(0.45)["opacities"][objects["appearing"]].max() < o1[objects["appearing"]].max()


# ----------------------------------------------------------------------------------------------
# D-NeRF writer
# ----------------------------------------------------------------------------------------------


def test_dnerf_dataset_round_trip(tmp_path):
    write_dnerf_dataset(tmp_path, n_train=6, n_test=2, width=W, height=H, n_val=1)
    for split, n in (("train", 6), ("val", 1), ("test", 2)):
        meta = json.loads((tmp_path / f"transforms_{split}.json").read_text())
        assert "camera_angle_x" in meta and len(meta["frames"]) == n
        assert all("time" in f and (tmp_path / (f["file_path"] + ".png")).is_file() for f in meta["frames"])
    assert json.loads((tmp_path / "transforms_train.json").read_text())["frames"][0]["file_path"] == "./train/r_000"

    assert detect_format(tmp_path) == "blender"
    data = load_dataset(tmp_path)
    assert data.is_dynamic and (len(data.train_indices), len(data.test_indices)) == (6, 2)
    train_t = sorted(data.camera(i).time for i in data.train_indices)
    assert np.allclose(train_t, np.linspace(0, 1, 6))
    for i in data.test_indices:  # held-out times lie strictly between training times
        t = data.camera(i).time
        assert 0 < t < 1 and min(abs(t - u) for u in train_t) > 0.05
    centers = {tuple(np.round(f.camera.center, 6)) for f in data.frames}
    assert len(centers) == len(data.frames)  # one camera per frame, test cameras held out
    rgba = data._load(0)[0]
    assert rgba.shape == (H, W, 4) and rgba[..., 3].float().mean() > 100
    assert_rerenders(data, [*data.train_indices[:2], *data.test_indices])


def test_blender_writer_still_loads(tmp_path):
    """The shared render / PNG helpers behind write_blender_dataset keep its output loadable."""
    views, K = dome_cameras(3, W, H)
    write_blender_dataset(still_life(), tmp_path, views, K, W, H, n_test=1)
    data = load_dataset(tmp_path)
    assert (len(data.train_indices), len(data.test_indices)) == (2, 1) and not data.is_dynamic
    assert data.image(0)[0].shape == (H, W, 3)


def test_supersampled_renders_average_samples_in_place():
    """supersample s: s x s samples a pixel, averaged. Two small blobs land where the one-sample
    render puts them (alpha-weighted centroids within 0.05 px), and the image is the 2x2 block
    mean of the render at twice the size."""
    from splat.scenes.dataset import render_rgba

    views, K = dome_cameras(3, 32, 24)
    blobs = dict(
        means=torch.tensor([[0.1, 0.05, 0.3], [-0.2, 0.1, 0.2]]),
        quats=torch.tensor([[1.0, 0, 0, 0]] * 2),
        scales=torch.full((2, 3), 0.04),
        opacities=torch.tensor([0.9, 0.7]),
        colors=torch.tensor([[1.0, 0.5, 0.2], [0.2, 0.9, 0.4]]),
    )
    ys, xs = np.mgrid[:24, :32]

    def centroids(image):
        w = image[..., 3].astype(np.float64)
        return np.stack([(w * xs).sum((1, 2)) / w.sum((1, 2)), (w * ys).sum((1, 2)) / w.sum((1, 2))], -1)

    one, two = render_rgba(blobs, views, K, 32, 24), render_rgba(blobs, views, K, 32, 24, supersample=2)
    assert np.abs(centroids(one) - centroids(two)).max() < 0.05
    K2 = K.copy()
    K2[:2] *= 2
    big = render_rgba(blobs, views, K2, 64, 48).astype(np.float64) / 255
    premultiplied = np.concatenate([big[..., :3] * big[..., 3:], big[..., 3:]], -1)
    mean = premultiplied.reshape(3, 24, 2, 32, 2, 4).mean((2, 4))
    alpha = two[..., 3] / 255
    assert np.abs(mean[..., 3] - alpha).max() <= 1 / 255 + 1e-6
    covered = alpha > 0.2
    straight = mean[..., :3][covered] / mean[..., 3:][covered]
    assert np.abs(straight - two[..., :3][covered] / 255).max() < 0.02


# ----------------------------------------------------------------------------------------------
# multi-view video folders
# ----------------------------------------------------------------------------------------------


def test_multiview_round_trip(tmp_path):
    write_multiview_video_dataset(tmp_path, n_cameras=3, n_times=4, width=W, height=H)
    assert sorted(p.name for p in (tmp_path / "cam01").iterdir()) == [f"{i:06d}.png" for i in range(4)]
    assert detect_format(tmp_path) == "multiview"
    data = load_dataset(tmp_path)
    assert data.format == "multiview" and data.is_dynamic and len(data) == 12
    assert (len(data.train_indices), len(data.test_indices)) == (8, 4)
    assert all(data.frames[i].name.startswith("cam00/") for i in data.test_indices)
    assert not any(data.frames[i].name.startswith("cam00/") for i in data.train_indices)
    for cam in ("cam00", "cam01", "cam02"):
        times = [f.camera.time for f in data.frames if f.name.startswith(cam + "/")]
        assert np.allclose(times, [0, 1 / 3, 2 / 3, 1])
    assert len({tuple(np.round(data.camera(i).center, 6)) for i in data.train_indices}) == 2  # 2 training cameras
    assert_rerenders(data, [0, 3, 5, 10])


def test_multiview_single_frame_and_nerfstudio_still_detected(tmp_path):
    write_multiview_video_dataset(tmp_path / "mv", n_cameras=2, n_times=1, width=W, height=H)
    data = load_dataset(tmp_path / "mv")
    assert [f.camera.time for f in data.frames] == [0.0, 0.0]
    ns = tmp_path / "ns"
    ns.mkdir()
    (ns / "transforms.json").write_text(json.dumps({"fl_x": 50, "frames": []}))
    assert detect_format(ns) == "nerfstudio"


def _corrupt_multiview(root, how):
    write_multiview_video_dataset(root, n_cameras=3, n_times=4, width=W, height=H)
    if how == "missing_camera_folder":
        shutil.rmtree(root / "cam01")
        return root / "cam01"
    if how == "unequal_frame_counts":
        (root / "cam02" / "000003.png").unlink()
        return root / "cam02" / "000003.png"
    if how == "missing_image":
        (root / "cam01" / "000001.png").unlink()
        return root / "cam01" / "000001.png"
    if how == "corrupt_image":
        victim = root / "cam01" / "000002.png"
        victim.write_bytes(victim.read_bytes()[:60])
        return victim
    meta_path = root / "transforms.json"
    if how == "malformed_json":
        meta_path.write_text('{"cameras": [')
    elif how == "nan_pose":
        meta = json.loads(meta_path.read_text())
        meta["cameras"][1]["transform_matrix"][0][3] = float("nan")
        meta_path.write_text(json.dumps(meta))
    return meta_path


@pytest.mark.parametrize(
    "how",
    ["missing_camera_folder", "unequal_frame_counts", "missing_image", "corrupt_image", "malformed_json", "nan_pose"],
)
def test_bad_multiview_input_names_the_file(tmp_path, how):
    culprit = _corrupt_multiview(tmp_path, how)
    with pytest.raises(DatasetError) as info:
        data = load_dataset(tmp_path)
        data.verify_images()
    msg = str(info.value)
    assert str(culprit) in msg and "\n" not in msg, msg


# --- a posed video's times.json (datasets/frame_times.py) ---


def _colmap_with_times(root, seconds):
    from scene_fixtures import write_colmap

    write_colmap(root, n=6, models=("PINHOLE",))
    names = sorted(p.name for p in (root / "images").iterdir())
    (root / "times.json").write_text(json.dumps({"unit": "seconds", "frames": dict(zip(names, seconds))}))
    return names


def test_a_posed_video_is_still_unless_a_moving_model_asks_for_its_times(tmp_path):
    seconds = [2.0, 2.5, 3.5, 4.0, 5.0, 6.0]  # uneven, and not starting at 0: normalised over the span
    names = _colmap_with_times(tmp_path, seconds)
    still = load_dataset(tmp_path)
    assert not still.is_dynamic
    assert any("--model 4d" in note for note in still.notes)  # the summary says how to train it moving
    moving = load_dataset(tmp_path, frame_times=True)
    assert moving.is_dynamic and moving.is_monocular
    got = {f.name: f.camera.time for f in moving.frames}
    assert got == pytest.approx({n: (s - 2.0) / 4.0 for n, s in zip(names, seconds)})
    # the poses are those of the still reading: only the times were added
    for a, b in zip(still.frames, moving.frames):
        assert np.array_equal(a.camera.viewmat, b.camera.viewmat)


@pytest.mark.parametrize(
    "frames, words",
    [
        ("list", "expected 'frames'"),
        ("empty", "expected 'frames'"),
        ("nan", "not a finite number"),
        ("missing", "no time for 1 image"),
        ("same", "same time"),
        ("text", "not a finite number"),
    ],
)
def test_bad_times_json_is_one_line_naming_the_file(tmp_path, frames, words):
    names = _colmap_with_times(tmp_path, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    good = {n: float(k) for k, n in enumerate(names)}
    body = {
        "list": {"frames": [0.0, 1.0]},
        "empty": {"frames": {}},
        "nan": {"frames": {**good, names[2]: float("nan")}},
        "missing": {"frames": {n: good[n] for n in names[1:]}},
        "same": {"frames": dict.fromkeys(names, 1.0)},
        "text": {"frames": {**good, names[0]: "0:01"}},
    }[frames]
    (tmp_path / "times.json").write_text(json.dumps(body))  # NaN is written as the token NaN, which Python reads
    with pytest.raises(DatasetError, match=words) as e:
        load_dataset(tmp_path, frame_times=True)
    assert "times.json" in str(e.value) and "\n" not in str(e.value)
    assert not load_dataset(tmp_path).is_dynamic  # a still reading never opens it
