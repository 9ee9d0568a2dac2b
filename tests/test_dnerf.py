"""D-NeRF (monocular dynamic) data end to end: what the run says it trains, val and test scored
apart, the background `--background auto` picks from the images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scene_fixtures import write_blender, write_colmap
from test_train import quick_config, splat_cli

from splat.scenes.dynamic import write_dnerf_dataset
from splat.train.config import PRESET_MODEL_DEFAULTS, TrainConfig, preset_config
from splat.train.losses import psnr
from splat.train.runs import new_trainer


@pytest.fixture(scope="module")
def dnerf_scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("dnerf")
    write_dnerf_dataset(root, n_train=16, n_test=3, n_val=2, width=40, height=30)
    return root


def flatten_alpha(src, dst, background: float):
    """A copy of a D-NeRF folder with RGB frames composited on `background` (the alpha dropped)."""
    for path in src.rglob("*"):
        out = dst / path.relative_to(src)
        if path.is_dir():
            out.mkdir(parents=True, exist_ok=True)
        elif path.suffix == ".png":
            rgba = np.asarray(Image.open(path).convert("RGBA")).astype(np.float64) / 255
            rgb = rgba[..., :3] * rgba[..., 3:] + background * (1 - rgba[..., 3:])
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((rgb * 255 + 0.5).astype(np.uint8), "RGB").save(out)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(path.read_bytes())


def test_summary_plan_and_config_say_a_moving_model_trains(dnerf_scene, tmp_path):
    run = tmp_path / "run"
    r = splat_cli("train", str(dnerf_scene), "--out", str(run), "--steps", "2", "--init-points", "300")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"D-NeRF scene {dnerf_scene}: 21 frames over time [0, 1], 16 train / 2 val / 3 test")
    plan = next(line for line in lines if line.startswith("plan:"))
    assert "3D Gaussians moved by shared motions: frames carry a time" in plan and "evaluation on 5 images" in plan
    evals = [line for line in lines if line.startswith("eval at step 2:")]
    assert len(evals) == 2 and evals[0].endswith("on 3 test images") and evals[1].endswith("on 2 val images")
    info = json.loads((run / "config.json").read_text())
    assert info["config"]["model"] == "motion" and info["dataset"].startswith("D-NeRF scene")


def test_a_model_chosen_from_the_data_brings_its_defaults_under_the_values_given(dnerf_scene, tmp_path):
    motion_on_cpu = PRESET_MODEL_DEFAULTS[("cpu", "motion")]

    def trainer(name, config, data=dnerf_scene):
        return new_trainer(str(data), tmp_path / name, config)

    chosen = trainer("chosen", preset_config("cpu", device="cpu", init_points=300))
    assert chosen.cfg.model == "motion"
    assert (chosen.cfg.steps, chosen.cfg.refine_stop) == (motion_on_cpu["steps"], motion_on_cpu["refine_stop"])
    given = trainer("given", preset_config("cpu", device="cpu", init_points=300, steps=50))
    assert (given.cfg.steps, given.cfg.refine_stop) == (50, motion_on_cpu["refine_stop"])
    assert preset_config("cpu", model="motion").steps == motion_on_cpu["steps"]  # named: at once
    assert preset_config("inria", model="motion").steps == TrainConfig().steps  # on CUDA: not measured
    # a run's own config.json (the model recorded, resumed with --steps) and a TrainConfig made
    # directly keep their values
    resumed = trainer("resumed", TrainConfig.from_json({**chosen.cfg.to_json(), "steps": 7}))
    assert resumed.cfg.steps == 7
    direct = trainer("direct", TrainConfig(preset="cpu", device="cpu", init_points=300))
    assert direct.cfg.model == "motion" and direct.cfg.steps == TrainConfig().steps
    write_blender(tmp_path / "static", n_train=4, n_test=1)
    still = trainer("still", preset_config("cpu", device="cpu", init_points=300), tmp_path / "static")
    assert still.cfg.model == "3d" and still.cfg.steps == TrainConfig().steps


def test_static_blender_resolves_to_3d(tmp_path):
    write_blender(tmp_path / "static", n_train=4, n_test=1)
    trainer = new_trainer(str(tmp_path / "static"), tmp_path / "run", quick_config(steps=1, init_points=100))
    assert trainer.cfg.model == "3d" and not trainer.dynamic
    assert trainer.data.summary().startswith("blender scene") and "frames over time" not in trainer.data.summary()
    assert trainer.scored_splits() == ["test"]


def test_val_and_test_are_scored_apart(dnerf_scene, tmp_path):
    trainer = new_trainer(str(dnerf_scene), tmp_path / "run", quick_config(steps=1, init_points=2000))
    data = trainer.data
    assert [data.frames[i].split for i in data.val_indices] == ["val", "val"]
    result = trainer.evaluate(save_renders=True)
    test, val = result["eval"], result["eval_val"]
    assert (test["split"], test["num_images"], val["split"], val["num_images"]) == ("test", 3, "val", 2)
    for split, indices in (("test", data.test_indices), ("val", data.val_indices)):
        by_hand = []
        for i in indices:
            gt, _ = trainer.ground_truth(i, trainer.eval_background)
            by_hand.append(psnr(trainer.render_eval(i, trainer.eval_background).clamp(0, 1), gt))
        scored = test if split == "test" else val
        assert scored["psnr"] == pytest.approx(float(np.mean(by_hand)), abs=1e-4), split
    # val frames share names with test frames (r_000.png): their renders go to their own folder
    step_dir = tmp_path / "run" / "renders" / "step_0"
    assert len(list(step_dir.glob("*.png"))) == 3 and len(list((step_dir / "val").glob("*.png"))) == 2


@pytest.mark.parametrize("copy,expected", [(None, "white"), (0.0, "black"), (1.0, "white")])
def test_background_auto_reads_the_images(dnerf_scene, tmp_path, copy, expected):
    """RGBA frames composite on white; an RGB copy on black trains on black, one on white on white."""
    root = dnerf_scene
    if copy is not None:
        root = tmp_path / "rgb"
        flatten_alpha(dnerf_scene, root, copy)
    trainer = new_trainer(str(root), tmp_path / "run", quick_config(steps=1, init_points=100))
    assert trainer.background_mode == expected
    index = trainer.data.train_indices[0]
    gt, _ = trainer.ground_truth(index, trainer.eval_background)
    if copy is not None:  # the ground truth is the file, whatever the background
        rgb = torch.from_numpy(np.array(Image.open(trainer.data.frames[index].image_path))).float() / 255
        assert torch.allclose(gt, rgb)
    corner = gt[0, 0]
    assert torch.allclose(corner, trainer.eval_background, atol=2 / 255), corner
    # config.json records the choice; `splat render RUN` renders on it by default
    from splat.run_folder import run_background

    trainer.train()
    assert trainer.cfg.background == expected and run_background(tmp_path / "run") == expected


def test_background_auto_keeps_photographs_on_black(tmp_path):
    """A COLMAP capture has no alpha and its borders are scenery: black, as before."""
    write_colmap(tmp_path / "colmap", n=8, models=("PINHOLE",), n_points=500)
    trainer = new_trainer(str(tmp_path / "colmap"), tmp_path / "run", quick_config(steps=1))
    assert trainer.data.format == "colmap" and trainer.background_mode == "black"


def test_resolution_warmup_keeps_images_at_least_80_px(tmp_path):
    """The CPU preset's warm-up (1/4, then 1/2) stops where a 100-px frame would shrink below 80 px."""
    for width, expected in ((40, [1, 1, 1]), (160, [2, 2, 1]), (400, [4, 2, 1])):
        root = tmp_path / f"w{width}"
        write_dnerf_dataset(root, n_train=2, n_test=1, n_val=0, width=width, height=width * 3 // 4)
        schedule = [[0, 4], [500, 2], [2000, 1]]
        trainer = new_trainer(
            str(root), tmp_path / f"run{width}", quick_config(init_points=50, resolution_schedule=schedule)
        )
        assert [trainer.downscale_at(s) for s in (0, 500, 2000)] == expected, width
