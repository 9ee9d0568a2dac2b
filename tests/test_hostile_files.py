"""Data and splat files someone sends you (issue 29): bounded work per input byte (SPZ headers,
animated images), bad values reported as bad input (one line, exit 2) rather than as a bug, and
dataset paths that stay inside the dataset. One test (or table) per defect."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from memory_probe import bound, peak_memory

# ----------------------------------------------------------------------------------------------
# 3. SPZ: a header cannot claim more Gaussians than a file of its size holds


def spz_v4_bomb(N: int, degree: int = 4, size: int = 3584) -> bytes:
    """An SPZ v4 file of `size` bytes whose ZSTD streams inflate to N Gaussians of zeros (padded
    with extension bytes before its table of contents). The previous reader's bound: 1024
    Gaussians per file byte."""
    import zstandard

    from splat.formats import spz

    sizes = [s for s in spz._block_sizes(N, degree, 4) if s]
    frames = [zstandard.ZstdCompressor(level=19).compress(bytes(s)) for s in sizes]
    toc = b"".join(struct.pack("<QQ", len(f), s) for f, s in zip(frames, sizes))
    pad = size - spz.HEADER_V4.size - len(toc) - sum(map(len, frames))
    assert pad >= 0, "the streams do not fit the file size asked for"
    header = spz.HEADER_V4.pack(spz.MAGIC, 4, N, degree, 12, 0, len(frames), spz.HEADER_V4.size + pad, bytes(12))
    return header + bytes(pad) + toc + b"".join(frames)


def test_spz_size_amplification_is_bounded(tmp_path):
    evil = tmp_path / "bomb.spz"
    evil.write_bytes(spz_v4_bomb(N=3584 * 1024 // 9))  # as many as the previous bound let a 3.5 KB file claim
    result = peak_memory(f"read_splats({str(evil)!r})", setup="from splat.formats import read_splats")
    assert result["outcome"] == "input error" and "more than" in result["message"], result
    assert result["peak_bytes"] < bound(evil.stat().st_size), f"peak {result['peak_bytes'] / 2**20:.0f} MiB"


def test_spz_within_the_bound_still_reads_in_bounded_memory(tmp_path):
    """A small file of many identical Gaussians (compressing far beyond real files) is read, within
    the allowance every file gets, decoding in chunks."""
    ok = tmp_path / "dense.spz"
    ok.write_bytes(spz_v4_bomb(N=150_000, degree=3, size=2048))
    result = peak_memory(
        f"assert read_splats({str(ok)!r})['means'].shape == (150_000, 3)", setup="from splat.formats import read_splats"
    )
    assert result["outcome"] == "ok", result
    assert result["peak_bytes"] < bound(ok.stat().st_size), f"peak {result['peak_bytes'] / 2**20:.0f} MiB"


# ----------------------------------------------------------------------------------------------
# 4. animated images: the first frame only, its size checked before decoding


def animated(path, n: int = 50, side: int = 1000) -> None:
    from PIL import Image

    frames = []
    for k in range(n):  # distinct frames (identical ones are merged by the encoder)
        a = np.zeros((side, side, 3), np.uint8)
        a[k, k] = 255
        frames.append(Image.fromarray(a))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=40)


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_an_animated_image_decodes_its_first_frame_only(tmp_path, suffix):
    bomb = tmp_path / f"bomb{suffix}"
    animated(bomb)  # a few kB: 50 frames of 1000 x 1000
    result = peak_memory(
        f"img = read_image(Path({str(bomb)!r}))\nassert img.shape == (1000, 1000, 3), img.shape",
        setup="from pathlib import Path\nfrom splat.datasets.images import read_image",
    )
    assert result["outcome"] == "ok", result
    assert result["peak_bytes"] < 64 << 20, (
        f"peak {result['peak_bytes'] / 2**20:.0f} MiB for {bomb.stat().st_size} bytes"
    )


def test_an_image_too_large_is_refused_before_decoding(tmp_path):
    import zlib

    from splat.datasets import DatasetError
    from splat.datasets.images import read_image

    # a PNG that declares 70000 x 8 pixels (more than any camera's side) and holds a few bytes
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 70000, 8, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    path = tmp_path / "wide.png"
    path.write_bytes(png)
    with pytest.raises(DatasetError, match="too large"):
        read_image(path)


# ----------------------------------------------------------------------------------------------
# 7. bad values in data files are bad input (one line, exit 2), a failure past the checks a bug


def test_bad_values_in_data_files_are_one_line(tmp_path):
    import json

    from scene_fixtures import write_colmap, write_llff, write_nerfstudio
    from test_reliability import TINY, assert_one_line_error, run_cli

    data = tmp_path / "colmap"
    write_colmap(data, n=3, models=("PINHOLE",), binary=False, n_points=20)
    points = data / "sparse" / "0" / "points3D.txt"
    lines = points.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    parts = lines[first].split()
    parts[4] = "300"  # a red of 300
    lines[first] = " ".join(parts)
    points.write_text("\n".join(lines) + "\n")
    rc, _, err = run_cli("train", data, "--out", tmp_path / "run", *TINY)
    assert_one_line_error(rc, err, points, "0..255")

    llff = tmp_path / "llff"
    write_llff(llff, n=8)
    np.savez(llff / "poses_bounds.npy", poses=np.load(llff / "poses_bounds.npy"))  # np.savez keeps the name
    (llff / "poses_bounds.npy.npz").replace(llff / "poses_bounds.npy")
    rc, _, err = run_cli("train", llff, "--out", tmp_path / "run2", *TINY)
    assert_one_line_error(rc, err, llff / "poses_bounds.npy", "zip")

    ns = tmp_path / "ns"  # found by bench/fuzz_readers.py: an unhashable camera_model
    write_nerfstudio(ns, n=3)
    meta = json.loads((ns / "transforms.json").read_text())
    meta["camera_model"] = []
    (ns / "transforms.json").write_text(json.dumps(meta))
    rc, _, err = run_cli("train", ns, "--out", tmp_path / "run3", *TINY)
    assert_one_line_error(rc, err, ns / "transforms.json", "camera_model")


def test_ply_sh_properties(tmp_path):
    import torch
    from plyfile import PlyData, PlyElement
    from test_reliability import assert_one_line_error, run_cli

    from splat.ply import load_ply, save_ply

    n = 20
    g = torch.Generator().manual_seed(0)
    splats = {
        "means": torch.randn(n, 3, generator=g) * 0.3,
        "scales": torch.full((n, 3), -3.0),
        "quats": torch.randn(n, 4, generator=g),
        "opacities": torch.zeros(n),
        "sh0": torch.rand(n, 1, 3, generator=g),
        "shN": torch.rand(n, 24, 3, generator=g),  # SH degree 4
    }
    deg4 = tmp_path / "deg4.ply"
    save_ply(deg4, splats)
    loaded = load_ply(deg4)
    assert loaded["shN"].shape == (n, 15, 3) and torch.equal(loaded["shN"], splats["shN"][:, :15])
    rc, _, err = run_cli("render", deg4, "--frames", "1", "--width", "16", "--height", "12", "--out", tmp_path / "r")
    assert rc == 0, err

    vertex = PlyData.read(str(deg4))["vertex"].data
    names = list(vertex.dtype.names)
    names[names.index("f_rest_7")] = "f_rest_x"
    odd = tmp_path / "f_rest_x.ply"
    PlyData([PlyElement.describe(vertex.astype([(k, "f4") for k in names]), "vertex")]).write(str(odd))
    rc, _, err = run_cli("render", odd, "--frames", "1", "--width", "16", "--height", "12", "--out", tmp_path / "r2")
    assert_one_line_error(rc, err, odd, "f_rest_x")


def test_camera_path_values_and_bugs(tmp_path, monkeypatch):
    import json

    from splat import trajectories
    from splat.camera import Camera
    from splat.errors import InputError

    path = tmp_path / "camera_path.json"
    entry = {"camera_to_world": np.eye(4).flatten().tolist(), "fov": 50.0}
    for bad in ({"fov": "wide"}, {"fov": 0}, {"camera_to_world": [1, 2, 3]}, {"camera_to_world": [0.0] * 16}):
        path.write_text(json.dumps({"camera_path": [{**entry, **bad}], "render_width": 64, "render_height": 48}))
        with pytest.raises(InputError, match="camera_path.json"):
            trajectories.from_json(path)
    path.write_text(json.dumps({"camera_path": [entry], "render_width": 64.5}))
    with pytest.raises(InputError, match="render_width"):
        trajectories.from_json(path)
    path.write_text(json.dumps({"camera_path": [entry]}))
    assert len(trajectories.from_json(path)) == 1

    def broken(*args, **kwargs):
        raise TypeError("an internal invariant broke")

    monkeypatch.setattr(Camera, "from_c2w_opengl", broken)
    with pytest.raises(TypeError, match="internal invariant"):  # a bug, not "not a camera_path.json"
        trajectories.from_json(path)


# ----------------------------------------------------------------------------------------------
# 9. dataset paths stay inside the dataset; renders do not overwrite each other


@pytest.fixture(scope="module")
def secret(tmp_path_factory):
    """An image outside every dataset, which no dataset may make training read."""
    import imageio.v3 as iio

    path = tmp_path_factory.mktemp("private") / "secret.png"
    iio.imwrite(path, np.full((48, 64, 3), 200, np.uint8))
    return path


def _escape_cases(secret, data):
    """(label, value) of paths that leave the dataset: absolute, and '..' up to the secret."""
    import os

    return [("absolute", str(secret)), ("dotdot", os.path.relpath(secret, data))]


@pytest.mark.parametrize("key", ["file_path", "mask_path", "depth_file_path", "ply_file_path"])
def test_nerfstudio_paths_stay_inside(tmp_path, secret, key):
    import json

    from scene_fixtures import write_nerfstudio
    from test_reliability import TINY, assert_one_line_error, run_cli

    data = tmp_path / "ns"
    write_nerfstudio(data, n=4)
    good = (data / "transforms.json").read_text()
    for label, value in _escape_cases(secret, data):
        meta = json.loads(good)
        (meta if key == "ply_file_path" else meta["frames"][1])[key] = value
        (data / "transforms.json").write_text(json.dumps(meta))
        rc, _, err = run_cli("train", data, "--out", tmp_path / f"run-{label}", *TINY)
        assert_one_line_error(rc, err, data / "transforms.json", key, "inside")


def test_blender_and_colmap_paths_stay_inside(tmp_path, secret):
    import json
    import shutil

    from scene_fixtures import write_blender, write_colmap
    from test_reliability import TINY, assert_one_line_error, run_cli

    blender = tmp_path / "blender"
    write_blender(blender, n_train=4, n_test=1)
    good = (blender / "transforms_train.json").read_text()
    for label, value in _escape_cases(secret.with_suffix(""), blender):  # Blender appends ".png"
        meta = json.loads(good)
        meta["frames"][0]["file_path"] = value
        (blender / "transforms_train.json").write_text(json.dumps(meta))
        rc, _, err = run_cli("train", blender, "--out", tmp_path / f"b-{label}", *TINY)
        assert_one_line_error(rc, err, blender / "transforms_train.json", "file_path", "inside")

    for binary in (False, True):
        colmap = tmp_path / f"colmap-{binary}"
        write_colmap(colmap, n=3, models=("PINHOLE",), binary=binary, n_points=20)
        for label, value in _escape_cases(secret, colmap / "images"):
            model = colmap / "sparse" / "0"
            if binary:
                raw = (model / "images.bin").read_bytes()
                first = sorted(p.name for p in (colmap / "images").iterdir())[0]
                (model / "images.bin").write_bytes(raw.replace(first.encode() + b"\0", value.encode() + b"\0", 1))
            else:
                text = (model / "images.txt").read_text()
                first = sorted(p.name for p in (colmap / "images").iterdir())[0]
                (model / "images.txt").write_text(text.replace(f" {first}\n", f" {value}\n", 1))
            rc, _, err = run_cli("train", colmap, "--out", tmp_path / f"c-{binary}-{label}", *TINY)
            assert_one_line_error(rc, err, model, "inside")
            shutil.rmtree(colmap)
            write_colmap(colmap, n=3, models=("PINHOLE",), binary=binary, n_points=20)


def test_renders_with_the_same_stem_do_not_overwrite_each_other(tmp_path):
    import json

    from scene_fixtures import write_nerfstudio
    from test_reliability import run_cli

    data = tmp_path / "ns"
    write_nerfstudio(data, n=4)
    meta = json.loads((data / "transforms.json").read_text())
    for k, frame in enumerate(meta["frames"]):  # images/frame_000.png -> cam0/frame.png, cam1/frame.png, ...
        (data / f"cam{k}").mkdir()
        (data / frame["file_path"]).rename(data / f"cam{k}" / "frame.png")
        frame["file_path"] = f"cam{k}/frame.png"
    meta["test_filenames"] = ["cam1/frame.png", "cam2/frame.png"]
    (data / "transforms.json").write_text(json.dumps(meta))
    run = tmp_path / "run"
    rc, _, err = run_cli("train", data, "--out", run, "--steps", "2", "--init-points", "200", "--sh-degree", "0")
    assert rc == 0, err
    renders = sorted(p.name for p in (run / "renders").rglob("*.png"))
    assert renders == ["cam1_frame_png.png", "cam2_frame_png.png"], renders
