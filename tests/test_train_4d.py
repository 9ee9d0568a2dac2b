"""Training, saving and rendering 4D (XYZT) Gaussian scenes on the procedural dynamic scene (chosen
explicitly: `auto` trains moving 3D Gaussians on monocular data, tests/test_motion.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import train_until_interrupted
from test_train import quick_config, splat_cli

import splat
from splat.ply import load_ply, save_ply
from splat.scenes.dynamic import write_dnerf_dataset
from splat.train import ops
from splat.train.runs import export_ply, new_trainer, restore_trainer


@pytest.fixture(scope="module")
def dnerf_scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("dnerf")
    write_dnerf_dataset(root, n_train=24, n_test=4, width=48, height=36)
    return root


@pytest.mark.parametrize("batch_size", [1, 2])
def test_dynamic_data_trains_a_4d_model_that_learns(dnerf_scene, tmp_path, batch_size):
    trainer = new_trainer(
        str(dnerf_scene), tmp_path / "run", quick_config(model="4d", steps=400, init_points=3000, batch_size=batch_size)
    )
    assert trainer.dynamic and trainer.params["means"].shape[1] == 4 and "quats_right" in trainer.params
    before = trainer.evaluate(save_renders=False)["eval"]["psnr"]
    after = trainer.train()["eval"]["psnr"]
    assert after > before + 3.0, f"test PSNR {before:.2f} -> {after:.2f} dB"
    for k, v in trainer.params.items():
        assert torch.isfinite(v).all(), k


def test_static_model_can_be_forced_and_4d_needs_times(dnerf_scene, tmp_path):
    trainer = new_trainer(str(dnerf_scene), tmp_path / "a", quick_config(steps=2, model="3d", init_points=200))
    assert not trainer.dynamic and trainer.params["means"].shape[1] == 3
    from test_train import write_blender

    static = tmp_path / "static"
    write_blender(static, n_train=4, n_test=1)
    with pytest.raises(ValueError, match="4d needs frames with a time"):
        new_trainer(str(static), tmp_path / "b", quick_config(model="4d"))


def test_4d_densification_acts_in_space_time(dnerf_scene, tmp_path):
    trainer = new_trainer(str(dnerf_scene), tmp_path / "run", quick_config(model="4d", steps=3, init_points=300))
    n = trainer.num_gaussians
    params, opts = trainer.params, trainer.optimizers
    mask = torch.zeros(n, dtype=torch.bool)
    mask[:10] = True
    t_before = params["means"].data[:10, 3].clone()
    ops.split(params, opts, mask, torch.Generator().manual_seed(0))
    assert params["means"].shape == (n + 10, 4) and params["quats_right"].shape == (n + 10, 4)
    assert not torch.allclose(params["means"].data[-10:, 3], t_before), "split must sample in time too"
    assert opts["quats_right"].param_groups[0]["params"][0] is params["quats_right"]


@pytest.mark.parametrize("batch_size", [1, 3])
def test_4d_resume_is_bit_exact(dnerf_scene, tmp_path, batch_size):
    """Also covers time-batched steps (several frames at different times per step)."""
    cfg = dict(
        steps=16,
        refine_start=4,
        refine_every=4,
        checkpoint_every=8,
        keep_checkpoints=5,
        init_points=400,
        batch_size=batch_size,
    )
    straight = new_trainer(str(dnerf_scene), tmp_path / "a", quick_config(model="4d", **cfg))
    straight.train()
    interrupted = new_trainer(str(dnerf_scene), tmp_path / "b", quick_config(model="4d", **cfg))

    train_until_interrupted(interrupted, 7)  # what Ctrl-C does: finish the step, save, stop
    resumed = restore_trainer(tmp_path / "b")
    resumed.train()
    assert straight.num_gaussians > 400 or batch_size == 1  # densification ran on the batched gradients
    for k in straight.params:
        assert torch.equal(straight.params[k], resumed.params[k]), k


def test_4d_ply_round_trip_and_export_frame(dnerf_scene, tmp_path, gen):
    trainer = new_trainer(str(dnerf_scene), tmp_path / "run", quick_config(model="4d", steps=5, init_points=300))
    trainer.train()
    out, n = export_ply(tmp_path / "run")
    splats = load_ply(out)
    assert (
        splats["means"].shape == (n, 4) and splats["scales"].shape == (n, 4) and splats["quats_right"].shape == (n, 4)
    )
    save_ply(tmp_path / "again.ply", splats)
    again = load_ply(tmp_path / "again.ply")
    for k in splats:
        assert torch.equal(splats[k], again[k]), k
    # the exported scene (original frame) renders what the trained one (normalised frame) renders
    scene = splat.load(out)
    assert scene.is_dynamic
    norm = trainer.data.normalization
    index = trainer.data.test_indices[0]
    cam_data = trainer.data.camera(index)
    view = norm.viewmat_to_original(cam_data.viewmat)
    K = cam_data.K
    cam = splat.Camera(cam_data.width, cam_data.height, K[0, 0], K[1, 1], K[0, 2], K[1, 2], view)
    rgb = scene.render(cam, background=(1, 1, 1), time=cam_data.time)["rgb"]
    sh_degree = min(trainer.step // trainer.cfg.sh_degree_interval, trainer.cfg.sh_degree)
    with torch.no_grad():
        ref, _, _ = trainer.render(index, torch.ones(3), sh_degree)
    assert scene.sh_degree >= sh_degree
    if scene.sh_degree == sh_degree:
        assert (rgb - ref.clamp(0, 1)).abs().max() < 2e-3


def test_scene_render_time_and_cli_render_times(dnerf_scene, tmp_path):
    trainer = new_trainer(str(dnerf_scene), tmp_path / "run", quick_config(model="4d", steps=30, init_points=1500))
    trainer.train()
    scene = splat.load(tmp_path / "run")
    cam = scene.cameras[0].resized(40, 30)
    a = scene.render(cam, time=0.0)["rgb"]
    b = scene.render(cam, time=1.0)["rgb"]
    assert not torch.equal(a, b), "a dynamic scene looks the same at t=0 and t=1"
    both = scene.render([cam, cam], time=[0.0, 1.0])["rgb"]
    assert torch.allclose(both[0], a, atol=1e-6) and torch.allclose(both[1], b, atol=1e-6)
    out = tmp_path / "render"
    r = splat_cli(
        "render",
        str(tmp_path / "run"),
        "--trajectory",
        "orbit",
        "--frames",
        "4",
        "--times",
        "0:1:4",
        "--width",
        "32",
        "--height",
        "24",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "transforms.json").read_text())
    assert [f["time"] for f in meta["frames"]] == pytest.approx(list(np.linspace(0, 1, 4)))
    from splat.datasets import load_dataset

    data = load_dataset(out)
    assert data.is_dynamic
