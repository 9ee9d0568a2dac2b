"""Training hash-grid radiance fields end to end: learning, resume, render API and CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import train_until_interrupted
from scene_fixtures import write_blender, write_nerfstudio

import splat
from splat.cli import main
from splat.field_scene import FieldScene
from splat.train import losses
from splat.train.config import TrainConfig
from splat.train.runs import new_trainer, restore_trainer

# a small field: the procedural still life fills about +-0.5 of the normalised frame
SMALL = dict(
    model="field",
    field_samples=32768,
    field_grid_resolution=32,
    field_log2_hashmap_size=15,
    field_bound=0.6,
    eval_steps=[],
    log_every=50,
    checkpoint_every=10_000,
    save_renders=False,
)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("field_scene")
    write_blender(root, n_train=16, n_test=3)
    return root


@pytest.fixture(scope="module")
def trained(scene, tmp_path_factory):
    run = tmp_path_factory.mktemp("field_run")
    trainer = new_trainer(str(scene), run, TrainConfig(steps=300, **SMALL))
    before = trainer.evaluate(save_renders=False)["eval"]["psnr"]
    result = trainer.train()
    return trainer, run, before, result


def test_field_learns_the_scene(trained):
    trainer, _, before, result = trained
    after = result["eval"]["psnr"]
    assert after > before + 8 and after > 19, (before, after)
    assert trainer.background_mode == "random", "RGBA images train over random backgrounds"
    assert 0.005 < trainer.grid.occupied_fraction < 0.5, "the occupancy grid should have carved out empty space"


def test_field_resume_is_bit_exact(scene, tmp_path):
    cfg = dict(steps=40, **{**SMALL, "checkpoint_every": 20, "field_samples": 8192})
    straight = new_trainer(str(scene), tmp_path / "a", TrainConfig(**cfg))
    straight.train()
    interrupted = new_trainer(str(scene), tmp_path / "b", TrainConfig(**cfg))

    train_until_interrupted(interrupted, 23)  # what Ctrl-C does: finish the step, save, stop
    resumed = restore_trainer(tmp_path / "b")
    assert resumed.step == 23
    resumed.train()
    for (k, a), b in zip(straight.field.state_dict().items(), resumed.field.state_dict().values()):
        assert torch.equal(a, b), k
    assert torch.equal(straight.grid.density, resumed.grid.density)


def test_loaded_field_renders_like_training(trained):
    trainer, run, _, result = trained
    scene = splat.load(run)
    assert isinstance(scene, FieldScene) and scene.cameras, "the run's cameras come with it"
    index = trainer.data.test_indices[0]
    cam = scene.cameras[index]  # original frame
    out = scene.render(cam, outputs=("rgb", "depth", "alpha"), background=(1, 1, 1))
    gt, _ = trainer.ground_truth(index, torch.ones(3))
    assert out["rgb"].shape == (cam.height, cam.width, 3) and out["depth"].shape == (cam.height, cam.width, 1)
    assert (
        abs(
            losses.psnr(out["rgb"], gt, None)
            - losses.psnr(trainer.render_eval(index, torch.ones(3)).clamp(0, 1), gt, None)
        )
        < 0.05
    )

    # depth: expected camera z in the original frame, against the procedural scene's own depth
    from splat.scenes import still_life

    view = torch.from_numpy(cam.viewmat).float()[None]
    K = torch.from_numpy(cam.K).float()[None]
    ref, ref_alpha, _ = splat.rasterize(
        **still_life(), viewmats=view, Ks=K, width=cam.width, height=cam.height, render_mode="RGB+ED"
    )
    both = (ref_alpha[0, ..., 0] > 0.95) & (out["alpha"][..., 0] > 0.95)
    assert both.sum() > 100
    rel = (out["depth"][..., 0][both] - ref[0, ..., 3][both]).abs() / ref[0, ..., 3][both]
    assert float(rel.median()) < 0.03, float(rel.median())
    batch = scene.render([cam, cam], outputs=("alpha",))
    assert batch["alpha"].shape == (2, cam.height, cam.width, 1)
    with pytest.raises(ValueError, match="static"):
        scene.render(cam, time=0.5)


def test_unbounded_capture_uses_contraction(tmp_path):
    root = tmp_path / "ns"
    write_nerfstudio(root, n=10)
    trainer = new_trainer(
        str(root), tmp_path / "run", TrainConfig(steps=30, **{**SMALL, "field_bound": 0.0, "field_samples": 8192})
    )
    assert trainer.spec.contract and trainer.spec.bound == 1.0
    trainer.train()
    assert np.isfinite(trainer.evaluate(save_renders=False)["eval"]["psnr"])


def test_field_cli(scene, tmp_path, capsys):
    run = tmp_path / "run"
    args = [
        "train",
        str(scene),
        "--model",
        "field",
        "--steps",
        "30",
        "--out",
        str(run),
        "--samples-per-step",
        "4096",
        "--grid-resolution",
        "32",
        "--log2-hashmap-size",
        "14",
    ]
    assert main(args) == 0
    assert "occupied" in capsys.readouterr().out
    assert main(["eval", str(run), "--no-renders"]) == 0
    assert (
        main(
            [
                "render",
                str(run),
                "--frames",
                "2",
                "--width",
                "24",
                "--height",
                "16",
                "--out",
                str(tmp_path / "r"),
                "--depth",
            ]
        )
        == 0
    )
    assert len(list((tmp_path / "r" / "images").glob("*.png"))) == 2
    assert main(["export", str(run)]) == 2
    assert "neural-field run has no Gaussians" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                str(scene),
                "--model",
                "field",
                "--field-loss",
                "huber",
                "--steps",
                "3",
                "--out",
                str(tmp_path / "h"),
                "--samples-per-step",
                "2048",
                "--grid-resolution",
                "16",
            ]
        )
        == 0
    )


def test_viewer_refines_a_field_progressively(trained):
    from test_viewer import free_port

    from splat.viewer.app import Viewer

    trainer, run, _, _ = trained
    scene = splat.load(run)
    from types import SimpleNamespace

    from splat.viewer.app import _ClientState
    from splat.viewer.client_gui import Settings

    v = Viewer(scene, port=free_port())
    try:
        assert v.renderers == ("server",), "a field has no Gaussians for the browser to draw"
        assert v._levels(Settings()) == [Settings().moving_scale, 0.5, 1.0], "a field refines through half resolution"
        cam = scene.cameras[trainer.data.test_indices[0]].resized(40, 30)
        for mode in ("rgb", "depth", "alpha"):
            img = v._render(cam, Settings(mode=mode))
            assert img.shape == (30, 40, 3) and np.isfinite(img).all() and img.std() > 0.02, mode
        state = _ClientState(None, SimpleNamespace(stats=SimpleNamespace(content="")))
        v._update_stats(state, Settings(renderer="server"))
        assert "hash-grid field" in state.gui.stats.content
    finally:
        v.close()
    live = trainer.live_run().scene()  # what `splat train --viewer` shows: the training frame
    assert isinstance(live, FieldScene) and len(live.cameras) == len(trainer.data.frames)
    rgb = live.render(live.cameras[0], background=(1, 1, 1))["rgb"]
    gt, _ = trainer.ground_truth(0, torch.ones(3))
    assert losses.psnr(rgb, gt, None) > 18


def test_field_demo(tmp_path, capsys):
    out = tmp_path / "demo"
    assert (
        main(["demo", "--field", "--out", str(out), "--steps", "20", "--views", "8", "--width", "32", "--height", "24"])
        == 0
    )
    assert len(list((out / "novel_views").glob("*.png"))) == 8
    assert "a field has no Gaussians to export" in capsys.readouterr().out
    assert main(["demo", "--field", "--dynamic", "--out", str(tmp_path / "x")]) == 2
