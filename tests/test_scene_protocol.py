"""One render path per representation: every scene satisfies the `Scene` protocol, trainers
evaluate through the same scene objects users get (bit for bit), and the scene modules import
without a cycle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from scene_fixtures import write_blender

from splat.camera import pixel_rays
from splat.fields.radiance_field import render_rays_chunked
from splat.scene import GaussianScene
from splat.scene_protocol import Scene
from splat.scenes.dynamic import write_dnerf_dataset
from splat.train.config import TrainConfig
from splat.train.runs import new_trainer
from splat.train.trainer import sh_degree_at

ROOT = Path(__file__).resolve().parents[1]
QUICK = dict(steps=10, eval_steps=[], checkpoint_every=10_000, save_renders=False, init_points=200)


@pytest.fixture(scope="module")
def blender_scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("blender")
    write_blender(root, n_train=4, n_test=2)
    return root


@pytest.fixture(scope="module")
def dnerf_scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("dnerf")
    write_dnerf_dataset(root, n_train=6, n_test=2, width=40, height=30)
    return root


def randomize(params, gen: torch.Generator) -> None:
    """Random Gaussians in place of the initial ones: in front of the cameras, all SH bands set."""
    with torch.no_grad():
        n = params["means"].shape[0]
        params["means"][:, :3] = torch.rand(n, 3, generator=gen) - 0.5
        if params["means"].shape[1] == 4:
            params["means"][:, 3] = torch.rand(n, generator=gen)
        params["scales"].copy_(torch.rand(params["scales"].shape, generator=gen) * 2 - 4.5)
        for k in ("quats", "quats_right"):
            if k in params:
                params[k].copy_(torch.randn(params[k].shape, generator=gen))
        params["opacities"].copy_(torch.randn(n, generator=gen))
        params["sh0"].copy_(torch.randn(params["sh0"].shape, generator=gen))
        params["shN"].copy_(0.3 * torch.randn(params["shN"].shape, generator=gen))


def gaussian_trainer(root, tmp_path, gen, **kw):
    trainer = new_trainer(str(root), tmp_path / "run", TrainConfig(sh_degree=1, sh_degree_interval=5, **QUICK, **kw))
    randomize(trainer.params, gen)
    if trainer.moving:  # shared motions that move the Gaussians apart over time
        with torch.no_grad():
            trainer.params["motion"].copy_(torch.randn(trainer.params["motion"].shape, generator=gen) * 2)
            for v in trainer.bases.values():
                v.add_(0.1 * torch.randn(v.shape, generator=gen))
    trainer.step = 5  # SH degree 1 active
    return trainer


def field_trainer(root, tmp_path):
    cfg = dict(model="field", field_samples=4096, field_grid_resolution=16, field_log2_hashmap_size=12)
    return new_trainer(str(root), tmp_path / "field", TrainConfig(**QUICK, **cfg))


def test_every_scene_satisfies_the_protocol(blender_scene, dnerf_scene, tmp_path, gen):
    trainers = [
        gaussian_trainer(blender_scene, tmp_path / "3d", gen),
        gaussian_trainer(dnerf_scene, tmp_path / "4d", gen, model="4d"),
        gaussian_trainer(dnerf_scene, tmp_path / "motion", gen),
        field_trainer(blender_scene, tmp_path),
    ]
    for trainer in trainers:
        scene = trainer.scene()
        assert isinstance(scene, Scene), type(scene)
        assert isinstance(trainer.live_run().scene(), Scene)
        assert scene.is_dynamic == (scene.time_range is not None) == getattr(trainer, "dynamic", False)
        assert scene.num_primitives > 0 and scene.cameras == trainer.cameras
        assert (scene.splats is None) == (trainer.cfg.model == "field")
        lo, hi = scene.bounds()
        assert (lo <= hi).all()
        cam = scene.cameras[0].resized(24, 18)
        out = scene.render(cam, outputs=("rgb", "depth", "alpha"), time=0.5 if scene.is_dynamic else None)
        assert out["rgb"].shape == (18, 24, 3) and out["depth"].shape == out["alpha"].shape == (18, 24, 1)
        assert torch.isfinite(out["rgb"]).all()
        assert isinstance(scene.to("cpu"), Scene)


@pytest.mark.parametrize("kind, eps2d", [("3d", 0.3), ("3d", 0.05), ("4d", 0.3), ("motion", 0.3), ("motion", 0.05)])
def test_trainer_eval_renders_equal_the_user_facing_scene(blender_scene, dnerf_scene, tmp_path, gen, kind, eps2d):
    trainer = gaussian_trainer(blender_scene if kind == "3d" else dnerf_scene, tmp_path, gen, model=kind, eps2d=eps2d)
    assert trainer.cfg.model == kind
    bases = {k: v.detach().clone() for k, v in trainer.bases.items()} if trainer.moving else None
    params = {k: v.detach().clone() for k, v in trainer.params.items()}
    mode = trainer.cfg.rasterize_mode
    user = GaussianScene(params, bases=bases, rasterize_mode=mode, eps2d=eps2d)  # as splat.load
    if eps2d != 0.3:  # the filter changes the image: a scene that dropped it would fail below
        index = trainer.data.test_indices[0]
        time = trainer.data.camera(index).time
        other = GaussianScene(params, bases=bases, rasterize_mode=mode).render(trainer.cameras[index], time=time)
        assert (other["rgb"] - user.render(trainer.cameras[index], time=time)["rgb"]).abs().max() > 1e-2
    bg = torch.rand(3, generator=gen)
    for index in trainer.data.test_indices:
        time = trainer.data.camera(index).time
        expected = user.render(trainer.cameras[index], background=bg, time=time)["rgb"]
        assert torch.equal(trainer.render_eval(index, bg), expected)
        # the training step's render (with gradients) gives the same image
        image, _, _ = trainer.render(index, bg, sh_degree_at(trainer.step, trainer.cfg))
        assert torch.equal(image.detach().clamp(0, 1), expected)


def test_a_run_records_its_filter_and_a_bad_one_is_refused(blender_scene, tmp_path):
    """The low-pass filter (eps2d) a run trained with travels in its checkpoint to splat.load; a
    checkpoint with a filter that is not a positive variance fails in one line naming the file."""
    import splat
    from splat.errors import InputError

    trainer = new_trainer(str(blender_scene), tmp_path / "run", TrainConfig(**{**QUICK, "steps": 2}, eps2d=0.05))
    trainer.train()
    assert splat.load(tmp_path / "run").eps2d == 0.05
    (checkpoint,) = (tmp_path / "run" / "checkpoints").glob("step_*.pt")
    for bad in (-1.0, 0.0, float("nan"), "0.1", 1e9):
        state = torch.load(checkpoint, weights_only=True)
        state["config"]["eps2d"] = bad
        torch.save(state, tmp_path / "bad.pt")
        with pytest.raises(InputError, match=r"bad\.pt: .*eps2d"):
            splat.load(tmp_path / "bad.pt")
    with pytest.raises(InputError, match="eps2d"):
        TrainConfig(eps2d=-0.1).validate()


def test_the_filter_follows_the_model_and_older_runs_keep_theirs(blender_scene, tmp_path):
    """eps2d 0 (automatic): still 3D Gaussians train with 0.1, moving and 4D ones with 0.3; a value
    given stays. A run from before the setting (its records lack it) trained with 0.3: it resumes
    and loads with 0.3, not with today's automatic value."""
    import json

    from helpers import forget_setting

    import splat
    from splat.train.config import resolve_eps2d
    from splat.train.runs import restore_trainer

    assert resolve_eps2d(0.0, "3d") == 0.1
    assert [resolve_eps2d(0.0, model) for model in ("motion", "4d")] == [0.3, 0.3]
    assert resolve_eps2d(0.2, "3d") == resolve_eps2d(0.2, "motion") == 0.2
    run = tmp_path / "run"
    new_trainer(str(blender_scene), run, TrainConfig(**{**QUICK, "steps": 2})).train()
    info = json.loads((run / "config.json").read_text())
    assert info["config"]["eps2d"] == 0.1 and splat.load(run).eps2d == 0.1
    forget_setting(run, "eps2d")
    assert restore_trainer(run, {"steps": 3}).cfg.eps2d == 0.3 and splat.load(run).eps2d == 0.3


def test_field_trainer_eval_renders_equal_its_scene_and_rays(blender_scene, tmp_path):
    trainer = field_trainer(blender_scene, tmp_path)
    for _ in range(3):
        trainer.train_step()
    index = trainer.data.test_indices[0]
    bg = torch.tensor([0.2, 0.5, 0.9])
    with torch.no_grad():
        image = trainer.render_eval(index, bg)
        cam = trainer.data.camera(index)
        ys, xs = torch.meshgrid(torch.arange(cam.height), torch.arange(cam.width), indexing="ij")
        pixels = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1)
        origins, dirs = pixel_rays(pixels, trainer.data.K(index), trainer.data.viewmat(index))
        rays = render_rays_chunked(trainer.field, trainer.grid, origins, dirs, bg)["rgb"]
    assert torch.equal(image, rays.reshape(cam.height, cam.width, 3).clamp(0, 1))
    assert torch.equal(image, trainer.scene().render(trainer.cameras[index], background=bg)["rgb"])


@pytest.mark.parametrize("module", ["splat.field_scene", "splat.scene", "splat.scene_protocol"])
def test_scene_modules_import_alone(module):
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, cwd=ROOT)


def test_datasets_do_not_import_the_renderer():
    """Datasets are cameras and images; Gaussians move between frames in splat/gaussians.py."""
    texts = {p.name: p.read_text() for p in (ROOT / "datasets").glob("*.py")}
    offenders = [name for name, text in texts.items() if "splat.renderer" in text or "renderer.slicing" in text]
    assert not offenders, offenders
