"""Reliability and security (issue 15): crafted checkpoints do not run code, one writer per run
folder, disk-full saves, malformed input as one line, no silent wrong results, small datasets,
no litter, and bugs that keep their traceback. One test (or table) per defect."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from scene_fixtures import write_blender, write_colmap, write_nerfstudio

import splat
from splat import cli
from splat.errors import InputError, RunBusyError
from splat.train.config import TrainConfig
from splat.train.run_lock import LOCK_NAME, lock_run, unlock_run
from splat.train.runs import new_trainer, restore_trainer

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--steps", "2", "--init-points", "200", "--sh-degree", "0", "--eval-every", "1000"]


def run_cli(*args) -> tuple[int, str, str]:
    """splat's CLI in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue()


def assert_one_line_error(rc: int, err: str, *names) -> None:
    err = err.strip()
    assert rc == 2, err
    assert err.count("\n") == 0 and "Traceback" not in err and "error:" in err, err
    for name in names:
        assert str(name) in err, (name, err)


def quick_config(**kw) -> TrainConfig:
    base = dict(
        steps=2, eval_steps=[], log_every=1, init_points=200, sh_degree=0, save_renders=False, checkpoint_every=1000
    )
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def blender_scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("blender")
    write_blender(root, n_train=4, n_test=1)
    return root


@pytest.fixture(scope="module")
def nerfstudio_scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("nerfstudio")
    write_nerfstudio(root, n=4)
    return root


@pytest.fixture(scope="module")
def trained_run(blender_scene, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    new_trainer(str(blender_scene), run, quick_config()).train()
    return run


def copy_of(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


# ----------------------------------------------------------------------------------------------
# 1. opening a file never runs code from it


class _Mkdir:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


@pytest.mark.parametrize("kind", ["gaussians", "field", "whole_file"])
def test_crafted_checkpoint_does_not_run_code(tmp_path, trained_run, kind):
    marker = tmp_path / "pwned"
    if kind == "gaussians":
        state = {"params": {"means": _Mkdir(marker)}, "normalization": {}}
    elif kind == "field":
        state = {"model": "field", "field_spec": {}, "field": _Mkdir(marker), "grid": {}, "normalization": {}}
    else:
        state = _Mkdir(marker)
    evil = tmp_path / "evil.pt"
    torch.save(state, evil)

    with pytest.raises(InputError, match="refused"):
        splat.load(evil)
    assert not marker.exists()
    rc, _, err = run_cli("render", evil, "--frames", "1", "--out", tmp_path / "r")
    assert_one_line_error(rc, err, evil)
    # --resume, eval and export read the run folder's newest checkpoint
    run = copy_of(trained_run, tmp_path)
    shutil.copy(evil, run / "checkpoints" / "step_9999999.pt")
    for command in (["train", "--resume", run, "--steps", "5"], ["eval", run], ["export", run], ["view", run]):
        rc, _, err = run_cli(*command)
        assert_one_line_error(rc, err, "step_9999999.pt")
    assert not marker.exists()


def test_real_checkpoints_still_load(trained_run):
    scene = splat.load(trained_run)
    assert scene.num_gaussians > 0


# ----------------------------------------------------------------------------------------------
# 2. one writer per run folder


def _hold_lock(run: Path):
    code = (
        f"from splat.train.run_lock import lock_run; lock_run({str(run)!r}); "
        "print('locked', flush=True); import time; time.sleep(120)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_writer_exits_2_naming_the_holder(tmp_path, trained_run, blender_scene):
    run = copy_of(trained_run, tmp_path)
    fresh = tmp_path / "fresh"
    holders = [_hold_lock(run), _hold_lock(fresh)]
    try:
        rc, _, err = run_cli("train", "--resume", run, "--steps", "4")
        assert_one_line_error(rc, err, run, f"PID {holders[0].pid}")
        rc, _, err = run_cli("train", blender_scene, "--out", fresh, *TINY)
        assert_one_line_error(rc, err, fresh, f"PID {holders[1].pid}")
        assert not (fresh / "config.json").exists()
        # readers work meanwhile, on the newest complete checkpoint; eval writes, so it waits its turn
        rc, out, err = run_cli("export", run, "--out", tmp_path / "x.ply")
        assert rc == 0 and "wrote" in out, err
        rc, out, err = run_cli("eval", run, "--no-renders")
        assert_one_line_error(rc, err, run, f"PID {holders[0].pid}")
        assert splat.load(run).num_gaussians > 0
    finally:
        for h in holders:
            h.kill()
            h.wait()
    assert lock_run(run)  # released on the holder's death
    unlock_run(run)


def test_training_holds_the_lock(tmp_path, blender_scene):
    import fcntl

    run = tmp_path / "run"
    seen = []

    def probe(trainer, out):
        fd = os.open(run / LOCK_NAME, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append(os.pread(fd, 32, 0).decode().strip())
        finally:
            os.close(fd)

    trainer = new_trainer(str(blender_scene), run, quick_config())
    trainer.train(progress=probe)
    assert seen and seen[0] == str(os.getpid())
    other = new_trainer(str(blender_scene), run, quick_config())
    other.train()  # released when train() returned


# ----------------------------------------------------------------------------------------------
# 4. checkpoints by steps and time; a full disk loses nothing already saved


def test_checkpoint_every_and_by_time(tmp_path, blender_scene):
    rc, _, err = run_cli(
        "train", blender_scene, "--out", tmp_path / "a", *TINY[2:], "--steps", "4", "--checkpoint-every", "2"
    )
    assert rc == 0, err
    assert [p.name for p in sorted((tmp_path / "a" / "checkpoints").glob("step_*.pt"))] == [
        "step_0000002.pt",
        "step_0000004.pt",
    ]
    trainer = new_trainer(
        str(blender_scene), tmp_path / "b", quick_config(steps=3, checkpoint_minutes=1e-9, keep_checkpoints=5)
    )
    trainer.train()
    assert len(list((tmp_path / "b" / "checkpoints").glob("step_*.pt"))) == 3  # every step, by time
    assert TrainConfig().checkpoint_minutes == 10.0


def test_disk_full_keeps_the_previous_checkpoint(tmp_path, blender_scene, monkeypatch):
    import splat.train.base as base

    real_save = torch.save
    calls = []

    def save(obj, f):  # as torch.save fails on a full disk: its zip writer's error, raised while handling the OSError
        calls.append(f)
        if len(calls) == 1:
            return real_save(obj, f)
        f.write(b"partial")
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")  # noqa: B904

    monkeypatch.setattr(base.torch, "save", save)
    run = tmp_path / "run"
    rc, _, err = run_cli("train", blender_scene, "--out", run, *TINY[2:], "--steps", "4", "--checkpoint-every", "2")
    assert_one_line_error(rc, err, "step_0000004.pt", "no space left", "needed")
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["step_0000002.pt"], names  # the previous one kept, the partial file removed
    monkeypatch.setattr(base.torch, "save", real_save)
    assert restore_trainer(run).step == 2


# ----------------------------------------------------------------------------------------------
# 5. malformed input: one line naming the file, exit 2


def _edit_json(path: Path, edit) -> None:
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


NERFSTUDIO_CASES = {
    "file_path_number": lambda m: m["frames"][0].update(file_path=5),
    "mask_path_number": lambda m: m["frames"][1].update(mask_path=7),
    "test_filenames_number": lambda m: m.update(test_filenames=5),
    "huge_width": lambda m: m.update(w=10**7),
    "infinite_width": lambda m: m.update(w=1e400),
    "time_text": lambda m: m["frames"][0].update(time="abc"),
}


@pytest.mark.parametrize("case", list(NERFSTUDIO_CASES) + ["nested_100k"])
def test_malformed_transforms_json(tmp_path, nerfstudio_scene, case):
    data = copy_of(nerfstudio_scene, tmp_path)
    path = data / "transforms.json"
    if case == "nested_100k":
        path.write_text("[" * 100_000 + "]" * 100_000)
    else:
        _edit_json(path, NERFSTUDIO_CASES[case])
    rc, _, err = run_cli("train", data, "--out", tmp_path / "run", *TINY)
    assert_one_line_error(rc, err, path)
    assert not (tmp_path / "run").exists()


def test_blender_time_text_names_the_file(tmp_path, blender_scene):
    data = copy_of(blender_scene, tmp_path)
    _edit_json(data / "transforms_train.json", lambda m: m["frames"][0].update(time="abc"))
    rc, _, err = run_cli("train", data, "--out", tmp_path / "run", *TINY)
    assert_one_line_error(rc, err, data / "transforms_train.json", "time")


def test_colmap_huge_width(tmp_path):
    data = tmp_path / "colmap"
    write_colmap(data, n=3, models=("PINHOLE",), n_points=50)
    cams = data / "sparse" / "0" / "cameras.bin"
    raw = bytearray(cams.read_bytes())
    struct.pack_into("<Q", raw, 8 + 8, 10**7)  # first camera's width
    cams.write_bytes(bytes(raw))
    rc, _, err = run_cli("train", data, "--out", tmp_path / "run", *TINY)
    assert_one_line_error(rc, err, data / "sparse" / "0", "too large")


def test_run_config_without_config_and_checkpoint_without_params(tmp_path, trained_run):
    run = copy_of(trained_run, tmp_path)
    good = (run / "config.json").read_text()
    _edit_json(run / "config.json", lambda m: m.pop("config"))
    for command in (["eval", run], ["train", "--resume", run, "--steps", "5"]):
        rc, _, err = run_cli(*command)
        assert_one_line_error(rc, err, run / "config.json")
    (run / "config.json").write_text(good)
    ckpt = sorted((run / "checkpoints").glob("step_*.pt"))[-1]
    state = torch.load(ckpt, weights_only=True)
    del state["params"]
    torch.save(state, ckpt)
    rc, _, err = run_cli("export", run)
    assert_one_line_error(rc, err, ckpt, "params")


def test_bad_train_flags(tmp_path, blender_scene):
    for flags, what in (
        (["--init-points", "-1"], "init_points"),
        (["--eval-every", "0"], "--eval-every"),
        (["--batch-size", "1000"], "batch_size"),
        (["--checkpoint-every", "0"], "checkpoint_every"),
    ):
        rc, _, err = run_cli("train", blender_scene, "--out", tmp_path / "run", *TINY, *flags)
        assert_one_line_error(rc, err, what)
        assert not (tmp_path / "run" / "config.json").exists()


def test_ply_with_zero_quaternions_names_the_file(tmp_path, trained_run):
    ply = tmp_path / "g.ply"
    rc, _, err = run_cli("export", trained_run, "--out", ply)
    assert rc == 0, err
    from plyfile import PlyData

    data = PlyData.read(str(ply), mmap=False)
    for i in range(4):
        data["vertex"].data[f"rot_{i}"][3] = 0.0
    ply = tmp_path / "zero_quats.ply"
    data.write(str(ply))
    rc, _, err = run_cli("render", ply, "--frames", "1", "--width", "16", "--height", "12", "--out", tmp_path / "r")
    assert_one_line_error(rc, err, ply, "quaternion")


# ----------------------------------------------------------------------------------------------
# 6. no silent wrong results


def test_cmyk_jpeg_is_converted_not_read_as_rgba(tmp_path):
    from PIL import Image

    from splat.datasets.images import read_image

    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[:, :16] = (200, 40, 40)
    rgb[:, 16:] = (30, 160, 220)
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(path, quality=95)
    out = read_image(path)
    assert out.shape == (24, 32, 3)
    assert np.abs(out.astype(int) - rgb).mean() < 12


def test_image_size_differs_from_declared(tmp_path, nerfstudio_scene):
    data = copy_of(nerfstudio_scene, tmp_path)
    img = data / "images" / "frame_001.png"
    iio.imwrite(img, iio.imread(img)[:, :60])
    rc, _, err = run_cli("train", data, "--out", tmp_path / "run", *TINY)
    assert_one_line_error(rc, err, img, "60x48", "64x48")

    # an integer downscale is handled explicitly: full-size images for a half-size camera
    data2 = copy_of(nerfstudio_scene, tmp_path / "half")
    _edit_json(
        data2 / "transforms.json",
        lambda m: (
            [m.update(w=32, h=24)]
            + [f.update(fl_x=f["fl_x"] / 2, fl_y=f["fl_y"] / 2, cx=f["cx"] / 2, cy=f["cy"] / 2) for f in m["frames"]]
        ),
    )  # noqa: E501
    from splat.datasets import load_dataset

    rgb, _ = load_dataset(data2).image(0)
    assert rgb.shape == (24, 32, 3)


def test_utf8_bom_is_accepted(tmp_path, nerfstudio_scene):
    from splat.datasets import load_dataset

    data = copy_of(nerfstudio_scene, tmp_path)
    path = data / "transforms.json"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert len(load_dataset(data)) == 4


# ----------------------------------------------------------------------------------------------
# 7. one-image datasets train on their image


@pytest.mark.parametrize("fmt", ["nerfstudio", "colmap"])
def test_single_image_dataset_holds_none_out(tmp_path, fmt):
    data = tmp_path / fmt
    if fmt == "nerfstudio":
        write_nerfstudio(data, n=1)
    else:
        write_colmap(data, n=1, models=("PINHOLE",), n_points=50)
    rc, out, err = run_cli("train", data, "--out", tmp_path / "run", *TINY)
    assert rc == 0, err
    assert "1 train / 0 test" in out and "no test split" in out


# ----------------------------------------------------------------------------------------------
# 8. no litter, no repeated log lines, files as the umask says


def test_stale_temp_files_are_removed_and_metrics_truncated_on_resume(tmp_path, blender_scene):
    run = tmp_path / "run"
    new_trainer(str(blender_scene), run, quick_config(steps=4, checkpoint_every=2)).train()
    (run / "checkpoints" / "step_0000004.pt").unlink()  # killed after logging steps 3-4, before their checkpoint
    stale = run / "checkpoints" / ".step_0000006.pt.x1y2z3.tmp.pt"
    stale.write_bytes(b"half a checkpoint")
    rc, _, err = run_cli("train", "--resume", run, "--steps", "4")
    assert rc == 0, err
    assert not stale.exists()
    train_steps = [
        json.loads(line)["step"]
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if "loss" in json.loads(line)
    ]
    assert train_steps == [1, 2, 3, 4], train_steps


def test_output_files_honour_the_umask(tmp_path, blender_scene):
    old = os.umask(0o022)
    try:
        run = tmp_path / "run"
        new_trainer(str(blender_scene), run, quick_config()).train()
        for path in (run / "config.json", sorted((run / "checkpoints").glob("step_*.pt"))[-1]):
            assert path.stat().st_mode & 0o777 == 0o644, path
        os.umask(0o077)
        from splat.io_utils import write_image

        write_image(tmp_path / "a.png", np.zeros((4, 4, 3)))
        assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


# ----------------------------------------------------------------------------------------------
# 9. only splat's own error types are one-line messages; bugs keep their traceback


def test_a_bug_is_not_disguised_as_bad_input(tmp_path, blender_scene, monkeypatch):
    import splat.train.runs as runs

    def buggy(*a, **k):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(runs, "new_trainer", buggy)
    rc, _, err = run_cli("train", blender_scene, "--out", tmp_path / "run", *TINY)
    assert rc == 1
    assert "Traceback" in err and "an internal invariant broke" in err and "bug in splat" in err
    assert issubclass(RunBusyError, splat.errors.SplatError) and issubclass(InputError, ValueError)
