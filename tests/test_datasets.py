"""Dataset loaders: every format on fixtures the tests write, the shared real data when present,
and every bad-input case (one-line DatasetError naming the file)."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from scene_fixtures import (
    HEIGHT,
    WIDTH,
    apply_distortion,
    render_views,
    write_blender,
    write_colmap,
    write_llff,
    write_nerfstudio,
)

import splat
from splat.datasets import DatasetError, detect_format, load_dataset
from splat.scenes import still_life
from splat.train.losses import psnr

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def rerender(data, index, background=(0.0, 0.0, 0.0)):
    """Render the still life through the loaded (normalised) camera: if the loader got any
    convention wrong (axes, focal, principal point, pose inversion), this will not match."""
    s, c = data.normalization.scale, torch.from_numpy(data.normalization.center).float()
    scene = still_life()
    scene["means"] = (scene["means"] - c) * s
    scene["scales"] = scene["scales"] * s
    cam = data.camera(index)
    rgb, alpha, _ = splat.rasterize(
        **scene,
        viewmats=data.viewmat(index)[None],
        Ks=data.K(index)[None],
        width=cam.width,
        height=cam.height,
        backgrounds=torch.tensor([background]),
    )
    return rgb[0].clamp(0, 1)


def assert_reproduces(data, background=(0.0, 0.0, 0.0), min_psnr=38.0):
    for i in range(len(data)):
        rgb, mask = data.image(i, torch.tensor(background))
        p = psnr(rerender(data, i, background), rgb, mask)
        assert p > min_psnr, f"frame {data.frames[i].name}: loaded camera re-renders the photo at only {p:.1f} dB"


def test_blender(tmp_path):
    write_blender(tmp_path)
    assert detect_format(tmp_path) == "blender"
    data = load_dataset(tmp_path)
    assert (len(data.train_indices), len(data.test_indices)) == (12, 4)
    assert data.points is None and data.extent == pytest.approx(1.0)
    rgb, mask = data.image(0)
    assert rgb.shape == (HEIGHT, WIDTH, 3) and mask is None
    assert_reproduces(data, background=(1.0, 1.0, 1.0))
    # RGBA is composited on the requested background
    black, _ = data.image(0, torch.zeros(3))
    assert (black <= rgb + 1e-6).all() and (black < rgb).any()


@pytest.mark.parametrize("per_frame", [False, True])
def test_nerfstudio_pinhole(tmp_path, per_frame):
    write_nerfstudio(tmp_path, per_frame_intrinsics=per_frame)
    assert detect_format(tmp_path) == "nerfstudio"
    data = load_dataset(tmp_path)
    assert len(data.test_indices) == 2 and len(data.train_indices) == 8  # every 8th held out
    assert_reproduces(data)


def test_nerfstudio_opencv_distortion_is_undone(tmp_path):
    dist = {"k1": 0.12, "k2": 0.03, "p1": 0.002, "p2": -0.001}  # pincushion: corners leave the photo
    _, _, pinhole, _ = write_nerfstudio(tmp_path, distortion=dist)
    data = load_dataset(tmp_path)
    assert data.camera(0).lens == "OPENCV"
    for i in range(3):
        rgb, mask = data.image(i)
        assert mask is not None and 0.8 < mask.float().mean() < 1.0
        undone = psnr(rgb, torch.from_numpy(pinhole[i]), mask)
        ignored = psnr(
            torch.from_numpy(apply_distortion(pinhole[i], data.camera(i).K, dist)), torch.from_numpy(pinhole[i]), mask
        )
        # two bilinear resamplings at 64x48 blur a little; a wrong lens model is far worse
        assert undone > 27 and undone > ignored + 5, f"undistortion: {undone:.1f} dB vs {ignored:.1f} dB when ignored"


@pytest.mark.parametrize("binary", [True, False])
def test_colmap_all_camera_models(tmp_path, binary):
    views, _, _, pts = write_colmap(tmp_path, n=10, binary=binary)
    assert detect_format(tmp_path) == "colmap"
    data = load_dataset(tmp_path)
    assert len(data) == 10 and len(data.test_indices) == 2
    assert {data.camera(i).lens for i in range(10)} == {"PINHOLE"}  # zero distortion collapses to pinhole
    assert data.points.shape == (200, 3)
    s, c = data.normalization.scale, data.normalization.center
    assert np.allclose(data.points.numpy(), s * (pts - c), atol=1e-5)
    assert_reproduces(data)


def test_colmap_per_image_distortion_models(tmp_path):
    write_colmap(tmp_path, n=4, models=("SIMPLE_RADIAL", "RADIAL", "OPENCV", "PINHOLE"))
    sparse = tmp_path / "sparse" / "0"
    # give the first three cameras real distortion
    data = bytearray((sparse / "cameras.bin").read_bytes())
    offsets, pos = [], 8
    for _ in range(4):
        cam_id, model_id, w, h = struct.unpack_from("<iiQQ", data, pos)
        n = {2: 4, 3: 5, 4: 8, 1: 4}[model_id]
        offsets.append((model_id, pos + 24))
        pos += 24 + 8 * n
    for model_id, p in offsets:
        if model_id == 2:
            struct.pack_into("<d", data, p + 24, 0.05)
        elif model_id == 3:
            struct.pack_into("<dd", data, p + 24, 0.05, -0.01)
        elif model_id == 4:
            struct.pack_into("<dddd", data, p + 32, 0.05, -0.01, 0.001, 0.001)
    (sparse / "cameras.bin").write_bytes(bytes(data))
    loaded = load_dataset(tmp_path)
    assert [loaded.camera(i).lens for i in range(4)] == ["SIMPLE_RADIAL", "RADIAL", "OPENCV", "PINHOLE"]
    assert loaded.camera(0).distortion == pytest.approx((0.05,))
    assert loaded.camera(2).distortion == pytest.approx((0.05, -0.01, 0.001, 0.001, 0.0))
    for i in range(3):
        _, mask = loaded.image(i)
        assert mask is not None and mask.float().mean() < 1.0


def test_llff(tmp_path):
    write_llff(tmp_path)
    assert detect_format(tmp_path) == "llff"
    data = load_dataset(tmp_path)
    assert len(data) == 8 and len(data.test_indices) == 1
    assert_reproduces(data)


def test_downscale_uses_images_n_and_scales_cameras(tmp_path):
    write_colmap(tmp_path, n=4, models=("PINHOLE",))
    full = load_dataset(tmp_path)
    half = load_dataset(tmp_path, downscale=2)
    assert (half.camera(0).width, half.camera(0).height) == (WIDTH // 2, HEIGHT // 2)
    assert np.allclose(half.camera(0).K[:2], full.camera(0).K[:2] / 2)
    rgb, _ = half.image(0)
    assert rgb.shape == (HEIGHT // 2, WIDTH // 2, 3)
    # an images_2/ folder is preferred when present
    import shutil

    shutil.copytree(tmp_path / "images", tmp_path / "images_2")
    marker = torch.zeros(HEIGHT // 2, WIDTH // 2, 3, dtype=torch.uint8).numpy()
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "images_2" / "0000.png", marker)
    assert load_dataset(tmp_path, downscale=2).image(0)[0].max() == 0


def test_formats_agree_on_cameras(tmp_path):
    """The same ring of cameras written as nerfstudio and as COLMAP loads to the same cameras."""
    write_nerfstudio(tmp_path / "ns", per_frame_intrinsics=True)
    write_colmap(tmp_path / "colmap", models=("PINHOLE",))
    a, b = load_dataset(tmp_path / "ns"), load_dataset(tmp_path / "colmap")
    by_name = {Path(f.name).stem.split("_")[-1].zfill(4): f.camera for f in a.frames}
    for f in b.frames:
        cam = by_name[Path(f.name).stem]
        assert np.allclose(cam.viewmat, f.camera.viewmat, atol=1e-5)
        assert np.allclose(cam.K, f.camera.K, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# real data (skipped when ../shared/datasets is absent)
# ----------------------------------------------------------------------------------------------


@pytest.mark.skipif(not (SHARED / "lego_400").exists(), reason="../shared/datasets/lego_400 is absent")
def test_real_lego():
    data = load_dataset(SHARED / "lego_400")
    assert (len(data.train_indices), len(data.test_indices)) == (100, 200)
    cam = data.camera(0)
    assert (cam.width, cam.height) == (400, 400)
    assert cam.K[0, 0] == pytest.approx(0.5 * 400 / math.tan(0.5 * 0.6911112070083618))
    rgb, _ = data.image(0)
    assert rgb.shape == (400, 400, 3) and rgb.mean() > 0.7  # mostly white background
    # cameras look at the object at the origin: the normalised origin projects near the centre
    p = data.viewmat(0).double() @ torch.tensor([*(-data.normalization.center * data.normalization.scale), 1.0])
    uv = (data.K(0).double() @ p[:3]) / p[2]
    assert p[2] > 0 and abs(uv[0] - 200) < 40 and abs(uv[1] - 200) < 40


@pytest.mark.skipif(not (SHARED / "beer").exists(), reason="../shared/datasets/beer is absent")
def test_real_beer_colmap():
    data = load_dataset(SHARED / "beer", repair_poses=False)  # the poses as given (test_capture_path repairs them)
    assert len(data) == 71 and data.points.shape == (4414, 3)
    assert {data.camera(i).lens for i in range(len(data))} == {"SIMPLE_RADIAL"}
    assert len({tuple(data.camera(i).K.ravel()) for i in range(len(data))}) > 1  # per-image cameras
    rgb, mask = data.image(data.test_indices[0])
    assert rgb.shape == (1280, 720, 3) and 0.9 < mask.float().mean() < 1.0
    # sparse points project into the images that see them
    inside = 0
    for i in data.train_indices[:5]:
        p = (data.viewmat(i)[:3, :3] @ data.points.T + data.viewmat(i)[:3, 3:]).T
        uv = (data.K(i) @ p.T).T
        uv = uv[:, :2] / uv[:, 2:]
        ok = (p[:, 2] > 0) & (uv[:, 0] > 0) & (uv[:, 0] < 720) & (uv[:, 1] > 0) & (uv[:, 1] < 1280)
        inside += ok.float().mean().item()
    assert inside / 5 > 0.5


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------


def _corrupt_blender(tmp_path, how):
    write_blender(tmp_path, n_train=3, n_test=1)
    meta_path = tmp_path / "transforms_train.json"
    meta = json.loads(meta_path.read_text())
    if how == "malformed_json":
        meta_path.write_text('{"camera_angle_x": 0.7, "frames": [')
        return meta_path
    if how == "missing_key":
        del meta["camera_angle_x"]
    elif how == "nan_pose":
        meta["frames"][1]["transform_matrix"][0][3] = float("nan")
    elif how == "singular_pose":
        meta["frames"][1]["transform_matrix"] = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
    elif how == "missing_image":
        (tmp_path / "train" / "r_1.png").unlink()
        return tmp_path / "train" / "r_1.png"
    meta_path.write_text(json.dumps(meta).replace("NaN", "NaN"))
    return meta_path


@pytest.mark.parametrize("how", ["malformed_json", "missing_key", "nan_pose", "singular_pose", "missing_image"])
def test_bad_blender_input_names_the_file(tmp_path, how):
    culprit = _corrupt_blender(tmp_path, how)
    with pytest.raises(DatasetError) as info:
        data = load_dataset(tmp_path)
        for i in range(len(data)):
            data.image(i)
    msg = str(info.value)
    assert str(culprit) in msg and "\n" not in msg, msg


def test_truncated_image_names_the_file(tmp_path):
    write_blender(tmp_path, n_train=3, n_test=1)
    victim = tmp_path / "train" / "r_2.png"
    victim.write_bytes(victim.read_bytes()[:60])
    data = load_dataset(tmp_path)
    with pytest.raises(DatasetError, match=str(victim)):
        data.verify_images()


def test_truncated_colmap_names_the_file(tmp_path):
    write_colmap(tmp_path, n=3)
    images_bin = tmp_path / "sparse" / "0" / "images.bin"
    images_bin.write_bytes(images_bin.read_bytes()[:100])
    with pytest.raises(DatasetError, match=f"{images_bin}: truncated"):
        load_dataset(tmp_path)


def test_unsupported_colmap_model(tmp_path):
    write_colmap(tmp_path, n=2, models=("PINHOLE",))
    cams = tmp_path / "sparse" / "0" / "cameras.bin"
    data = bytearray(cams.read_bytes())
    struct.pack_into("<i", data, 12, 7)  # FOV model id, 5 params: file no longer parses consistently
    cams.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=str(cams)):
        load_dataset(tmp_path)


def test_unknown_format_and_empty_dirs(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset format"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="no such directory"):
        load_dataset(tmp_path / "nope")


def test_bad_llff_shape(tmp_path):
    write_llff(tmp_path)
    np.save(tmp_path / "poses_bounds.npy", np.zeros((8, 15)))
    with pytest.raises(DatasetError, match="poses_bounds.npy: expected an N x 17 array"):
        load_dataset(tmp_path)


def test_render_views_are_not_blank():
    """Guard for the fixtures themselves: the photographs show the scene."""
    from scene_fixtures import ring_cameras

    views, Ks = ring_cameras(2)
    img = render_views(views, Ks)
    assert img[..., 3].mean() > 0.3 and img[..., :3].std() > 0.1
