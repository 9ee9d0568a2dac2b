"""Training: a short run learns the procedural scene, densification invariants, exact resume,
the CLI (train, eval, export, Ctrl-C) and its bad-input handling."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import train_until_interrupted
from scene_fixtures import write_blender, write_colmap

from splat.ply import load_ply
from splat.train import ops
from splat.train.config import TrainConfig
from splat.train.model import init_params
from splat.train.runs import export_ply, new_trainer, restore_trainer
from splat.train.strategies import DefaultStrategy, MCMCStrategy

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def colmap_scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("colmap_scene")
    write_colmap(root, n=24, models=("PINHOLE",), n_points=4000)
    return root


@pytest.fixture(scope="module")
def blender_scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("blender_scene")
    write_blender(root, n_train=8, n_test=2)
    return root


def quick_config(**kw) -> TrainConfig:
    base = dict(
        steps=300,
        refine_start=150,
        refine_every=100,
        reset_every=10_000,
        eval_steps=[],
        log_every=50,
        checkpoint_every=10_000,
        sh_degree=1,
        sh_degree_interval=100,
        save_renders=False,
    )
    return TrainConfig(**{**base, **kw})


# ----------------------------------------------------------------------------------------------
# learning


@pytest.mark.parametrize("strategy", ["default", "mcmc"])
def test_short_run_learns_the_scene(colmap_scene, tmp_path, strategy):
    """600 steps on the 64x48 procedural scene (24 views, 3 held out), initialised from 4000 of
    its points, lift held-out PSNR from ~13-15 dB to above 22 dB (measured: 24.7-26.2 dB)."""
    trainer = new_trainer(str(colmap_scene), tmp_path / "run", quick_config(strategy=strategy, steps=600))
    before = trainer.evaluate(save_renders=False)["eval"]["psnr"]
    after = trainer.train()["eval"]["psnr"]
    assert after > 22.0 and after > before + 8, f"test PSNR {before:.2f} -> {after:.2f} dB"
    assert all(torch.isfinite(p).all() for p in trainer.params.values())


# ----------------------------------------------------------------------------------------------
# densification invariants


def make_params(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    params = init_params(torch.randn(n, 3, generator=g), torch.rand(n, 3, generator=g), sh_degree=1)
    with torch.no_grad():
        params["opacities"].copy_(torch.randn(n, generator=g))
        params["quats"].copy_(torch.randn(n, 4, generator=g))
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    loss = sum((p**2).sum() for p in params.values())  # give Adam some state
    loss.backward()
    for opt in optimizers.values():
        opt.step()
    return params, optimizers


def assert_consistent(params, optimizers):
    n = params["means"].shape[0]
    for k, p in params.items():
        assert p.shape[0] == n and torch.isfinite(p).all(), k
        opt = optimizers[k]
        assert opt.param_groups[0]["params"][0] is p
        state = opt.state[p]
        assert state["exp_avg"].shape == p.shape and state["exp_avg_sq"].shape == p.shape


def fake_info(n, grads, width=64, height=48):
    means2d = torch.zeros(1, n, 2, requires_grad=True)
    means2d.grad = grads[None]
    return {
        "means2d": means2d,
        "width": width,
        "height": height,
        "n_cameras": 1,
        "radii": torch.ones(1, n, 2, dtype=torch.int32),
    }


def test_no_opacity_reset_late_in_a_run():
    g = torch.Generator().manual_seed(0)
    # densifying all run long (refine_stop_iter = total_steps): only the late-run rule applies
    strat = DefaultStrategy(refine_start_iter=10**6, reset_every=10, refine_stop_iter=10**7, total_steps=10**7)
    for progress, expect_reset in ((0.5, True), (0.85, False)):
        params, opts = make_params(50)
        before = params["opacities"].detach().clone()
        state = strat.initialize_state(scene_scale=1.0, n=50)
        stats = strat.step_post_backward(
            params, opts, state, step=10, info=fake_info(50, torch.zeros(50, 2)), generator=g, progress=progress
        )
        assert stats.get("opacity_reset", False) == expect_reset
        assert torch.equal(params["opacities"], before) != expect_reset


def test_schedule_milestones_hold_as_run_fractions_under_a_time_budget():
    """INRIA's milestones (resets every 3k while densifying until 15k of 30k steps) are unchanged
    for a run limited by steps; under a time budget they hold as fractions of the run."""
    g = torch.Generator().manual_seed(0)
    strat = DefaultStrategy(refine_start_iter=500, refine_stop_iter=15_000, reset_every=3000, total_steps=30_000)
    grads = torch.rand(50, 2, generator=g) * 1e-2  # every Gaussian is a densification candidate

    def run(step, progress):
        params, opts = make_params(50)
        state = strat.initialize_state(scene_scale=1.0, n=50)
        stats = strat.step_post_backward(params, opts, state, step, fake_info(50, grads), g, progress=progress)
        return stats, params["means"].shape[0]

    # by steps alone (progress = step / 30k): the step rules
    assert run(12_000, 0.4)[0].get("opacity_reset") and run(9000, 0.3)[0].get("opacity_reset")
    assert run(14_900, 14_900 / 30_000)[1] > 50  # still densifying
    assert run(15_000, 0.5) == ({}, 50)  # densification over
    # a time budget that ends the run after ~6k steps: step 3000 comes at 45% of the time, too
    # late for a reset (it would get 0.05 of the run to recover before densification stops) ...
    assert not run(3000, 0.45)[0].get("opacity_reset")
    assert run(3000, 0.3)[0].get("opacity_reset")
    # ... and densification stops at half the time, whatever the step
    assert run(3100, 0.49)[1] > 50
    assert run(3100, 0.51) == ({}, 50)


def test_default_strategy_clones_splits_prunes_and_caps():
    params, opts = make_params(200)
    g = torch.Generator().manual_seed(1)
    strat = DefaultStrategy(refine_start_iter=0, refine_every=1, max_gaussians=10_000)
    state = strat.initialize_state(scene_scale=1.0, n=200)
    with torch.no_grad():
        params["scales"][:100] = math.log(0.005)  # small: cloned when their gradient is high
        params["scales"][100:] = math.log(0.05)  # large: split
        params["opacities"][:10] = -10.0  # transparent: pruned
    grads = torch.zeros(200, 2)
    grads[::2] = 1.0  # every other Gaussian has a high screen-space gradient
    stats = strat.step_post_backward(params, opts, state, step=1, info=fake_info(200, grads), generator=g)
    high = torch.zeros(200, dtype=torch.bool)
    high[::2] = True
    assert stats["duplicated"] == int(high[:100].sum()) and stats["split"] == int(high[100:].sum())
    transparent_kept = int((~high[:10]).sum())  # pruning runs after growth; originals only
    assert stats["pruned"] >= transparent_kept
    assert params["means"].shape[0] == 200 + stats["duplicated"] + stats["split"] - stats["pruned"]
    assert_consistent(params, opts)

    capped_params, capped_opts = make_params(200)
    capped = DefaultStrategy(refine_start_iter=0, refine_every=1, max_gaussians=230)
    st = capped.initialize_state(scene_scale=1.0, n=200)
    capped.step_post_backward(
        capped_params, capped_opts, st, step=1, info=fake_info(200, torch.ones(200, 2)), generator=g
    )
    assert capped_params["means"].shape[0] <= 230
    assert_consistent(capped_params, capped_opts)


def test_split_children_sample_the_parent():
    params, opts = make_params(1)
    with torch.no_grad():
        params["scales"][:] = math.log(0.2)
    g = torch.Generator().manual_seed(0)
    ops.split(params, opts, torch.tensor([True]), g)
    assert params["means"].shape[0] == 2
    assert torch.allclose(torch.exp(params["scales"]), torch.full((2, 3), 0.2 / 1.6))
    assert_consistent(params, opts)


def test_mcmc_relocates_grows_and_respects_caps():
    params, opts = make_params(300)
    with torch.no_grad():
        params["opacities"][:30] = -20.0  # dead
    strat = MCMCStrategy(refine_start_iter=0, refine_every=1, cap_max=310, max_gaussians=10_000)
    state = strat.initialize_state(1.0, 300)
    g = torch.Generator().manual_seed(0)
    stats = strat.step_post_backward(params, opts, state, step=1, info={}, generator=g, lr_means=1e-4)
    assert stats["relocated"] == 30 and stats["added"] == 10
    assert params["means"].shape[0] == 310
    assert (torch.sigmoid(params["opacities"]) > strat.min_opacity * 0.999).all()  # nothing dead remains
    assert_consistent(params, opts)
    strat2 = MCMCStrategy(refine_start_iter=0, refine_every=1, cap_max=10**6, max_gaussians=320)
    for step in range(1, 4):
        strat2.step_post_backward(params, opts, state, step=step, info={}, generator=g, lr_means=1e-4)
    assert params["means"].shape[0] == 320


def test_relocation_preserves_the_combined_opacity():
    op = torch.tensor([0.3, 0.8, 0.95])
    scales = torch.ones(3, 3)
    for n in (1, 2, 5):
        new_op, _ = ops.relocation(op, scales, torch.full((3,), n), ops.binomial_table())
        assert torch.allclose(1 - (1 - new_op) ** n, op, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# checkpoints


def test_resume_is_bit_exact(blender_scene, tmp_path):
    cfg = dict(
        steps=24,
        refine_start=4,
        refine_every=4,
        checkpoint_every=12,
        keep_checkpoints=5,
        init_points=800,
        strategy="default",
    )
    straight = new_trainer(str(blender_scene), tmp_path / "a", quick_config(**cfg))
    straight.train()
    interrupted = new_trainer(str(blender_scene), tmp_path / "b", quick_config(**cfg))

    train_until_interrupted(interrupted, 11)  # what Ctrl-C does: finish the step, save, stop
    assert interrupted.interrupted and interrupted.step == 11
    resumed = restore_trainer(tmp_path / "b")
    assert resumed.step == 11
    resumed.train()
    assert straight.num_gaussians == resumed.num_gaussians
    for k in straight.params:
        assert torch.equal(straight.params[k], resumed.params[k]), k
    for k in straight.optimizers:
        a, b = straight.optimizers[k].state_dict()["state"][0], resumed.optimizers[k].state_dict()["state"][0]
        assert torch.equal(a["exp_avg_sq"], b["exp_avg_sq"]), k


def test_export_writes_the_original_frame(blender_scene, tmp_path):
    trainer = new_trainer(str(blender_scene), tmp_path / "run", quick_config(steps=5, init_points=300))
    trainer.train()
    out, n = export_ply(tmp_path / "run")
    splats = load_ply(out)
    assert n == trainer.num_gaussians == splats["means"].shape[0]
    norm = trainer.data.normalization
    expected = trainer.params["means"].detach().double() / norm.scale + torch.from_numpy(norm.center)
    assert torch.allclose(splats["means"].double(), expected, atol=1e-5)
    assert torch.allclose(splats["scales"], trainer.params["scales"].detach() - math.log(norm.scale), atol=1e-6)


# ----------------------------------------------------------------------------------------------
# command line


def splat_cli(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "splat.cli", *args], capture_output=True, text=True, cwd=kw.get("cwd", ROOT)
    )


def test_cli_train_eval_export(blender_scene, tmp_path):
    run = tmp_path / "run"
    settings = (
        tmp_path / "settings.json"
    )  # a setting without a flag, one with a flag, and one the command line overrides
    settings.write_text(json.dumps({"ssim_lambda": 0.1, "init_points": 300, "sh_degree": 3}))
    r = splat_cli(
        "train",
        str(blender_scene),
        "--out",
        str(run),
        "--steps",
        "20",
        "--eval-every",
        "10",
        "--config",
        str(settings),
        "--sh-degree",
        "1",
    )
    assert r.returncode == 0, r.stderr
    config = json.loads((run / "config.json").read_text())["config"]
    assert (config["ssim_lambda"], config["init_points"], config["sh_degree"]) == (0.1, 300, 1)
    assert "eval at step 20: PSNR" in r.stdout
    assert {"config.json", "metrics.jsonl", "checkpoints", "renders", "report.html"} <= {p.name for p in run.iterdir()}
    assert (run / "plan.txt").read_text().startswith("plan: ") and "PSNR (dB)" in (run / "report.html").read_text()
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in lines if "eval" in e] == [10, 20]
    renders = sorted((run / "renders" / "step_20").glob("*.png"))
    assert len(renders) == 2
    r = splat_cli("eval", str(run), "--no-renders")
    assert r.returncode == 0 and "PSNR" in r.stdout, r.stderr
    r = splat_cli("export", str(run), "--format", "ply")
    assert r.returncode == 0, r.stderr
    assert load_ply(run / "point_cloud.ply")["means"].shape[0] > 0
    r = splat_cli("train", str(blender_scene), "--out", str(run))
    assert r.returncode == 2 and "already holds a run" in r.stderr


@pytest.mark.parametrize(
    "body, words",
    [
        ('{"motion_knot": 12}', "unknown setting 'motion_knot' (did you mean motion_knots?)"),
        ('{"motion_knots": 1.5}', "motion_knots expects an integer, got 1.5"),
        ('{"steps": true}', "steps expects an integer, got true"),
        ('{"resolution_schedule": [1, 2]}', "resolution_schedule expects a list of lists of integers"),
        ('{"init_scale": "big"}', "init_scale expects a number or null"),
        ('{"model": "5d"}', "model expects auto, 3d, motion, 4d or field"),
        ("[1, 2]", "expected a JSON object"),
        ("{not json", "malformed JSON"),
    ],
)
def test_cli_bad_config_file_is_one_line_naming_it(blender_scene, tmp_path, body, words):
    settings = tmp_path / "settings.json"
    settings.write_text(body)
    r = splat_cli("train", str(blender_scene), "--out", str(tmp_path / "run"), "--config", str(settings))
    assert r.returncode == 2, (r.stdout, r.stderr)
    err = r.stderr.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and str(settings) in err and words in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("case", ["missing_dir", "unknown_format", "bad_json", "truncated_image", "nan_pose"])
def test_cli_bad_data_is_one_line_and_writes_nothing(tmp_path, case):
    data = tmp_path / "data"
    if case != "missing_dir":
        data.mkdir()
    if case in ("bad_json", "truncated_image", "nan_pose"):
        write_blender(data, n_train=2, n_test=1)
    if case == "bad_json":
        (data / "transforms_test.json").write_text("{not json")
    elif case == "truncated_image":
        img = data / "train" / "r_1.png"
        img.write_bytes(img.read_bytes()[:70])
    elif case == "nan_pose":
        meta = json.loads((data / "transforms_train.json").read_text())
        meta["frames"][0]["transform_matrix"][1][1] = float("nan")
        (data / "transforms_train.json").write_text(json.dumps(meta))
    run = tmp_path / "run"
    r = splat_cli("train", str(data), "--out", str(run), "--steps", "5")
    assert r.returncode == 2, (r.stdout, r.stderr)
    err = r.stderr.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and "error" in err, err
    assert str(data) in err
    assert not run.exists()


def test_cli_resume_without_checkpoint_and_bad_device(tmp_path, blender_scene):
    r = splat_cli("train", "--resume", str(tmp_path))
    assert r.returncode == 2 and "config.json is missing" in r.stderr
    if not torch.cuda.is_available():
        r = splat_cli("train", str(blender_scene), "--device", "cuda", "--out", str(tmp_path / "x"))
        assert r.returncode == 2 and "no CUDA device" in r.stderr


def test_ctrl_c_saves_a_checkpoint_and_resumes(blender_scene, tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "splat.cli",
            "train",
            str(blender_scene),
            "--out",
            str(run),
            "--steps",
            "100000",
            "--init-points",
            "300",
            "--sh-degree",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "config.json").exists():
        time.sleep(0.2)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "checkpoint saved" in out
    ckpts = sorted((run / "checkpoints").glob("step_*.pt"))
    assert len(ckpts) == 1
    step = int(ckpts[0].stem.split("_")[1])
    assert step > 0
    resumed = restore_trainer(run, {"steps": step + 3})
    assert resumed.step == step
    resumed.train()
    assert resumed.step == step + 3


def test_live_scene_shows_the_training_gaussians(blender_scene, tmp_path):
    """What `splat train --viewer` shows: the trainer's current Gaussians in the training frame."""
    from splat.scene import GaussianScene

    trainer = new_trainer(str(blender_scene), tmp_path / "run", quick_config(steps=2, init_points=300))
    scene = trainer.live_run().scene()
    assert isinstance(scene, GaussianScene) and scene.num_gaussians == trainer.num_gaussians
    assert len(scene.cameras) == len(trainer.data.frames)
    cam = scene.cameras[0]
    expected = trainer.render_eval(0, torch.zeros(3))
    assert torch.allclose(scene.render(cam)["rgb"], expected.clamp(0, 1), atol=1e-5)
