"""Shared motion bases (splat/motion.py): the blend against a per-Gaussian float64 twin written
from the formula, its gradients, the move back to the dataset's frame, and the checkpoint checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splat import motion
from splat.camera import quat_to_rotmat as np_quat_to_rotmat
from splat.checkpoint_checks import check_state
from splat.errors import InputError
from splat.scene import GaussianScene


def random_moving(n: int, k: int, knots: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    splats = {
        "means": torch.randn(n, 3, generator=g, dtype=dtype),
        "quats": torch.randn(n, 4, generator=g, dtype=dtype),
        "scales": torch.randn(n, 3, generator=g, dtype=dtype),
        motion.MOTION_KEY: torch.randn(n, k, generator=g, dtype=dtype) * 2,
    }
    bases = {
        "rotations": torch.randn(k, knots, 4, generator=g, dtype=dtype),
        "translations": torch.randn(k, knots, 3, generator=g, dtype=dtype),
        "pivots": torch.randn(k, 3, generator=g, dtype=dtype),
    }
    return splats, bases


def twin(splats, bases, time: float):
    """x(t) = sum_k w_k (R_k(t) (x - p_k) + p_k + T_k(t)), q(t) = normalize(sum_k w_k q_k(t)) * q, one Gaussian
    at a time, in numpy float64 (quaternion product written as a matrix)."""
    rot, tr, pivots = bases["rotations"].numpy(), bases["translations"].numpy(), bases["pivots"].numpy()
    knots = rot.shape[1]
    u = time * (knots - 1)
    i = min(int(np.floor(u)), knots - 2)
    f = u - i
    q_k = (1 - f) * rot[:, i] + f * rot[:, i + 1]
    q_k /= np.linalg.norm(q_k, axis=1, keepdims=True)
    t_k = (1 - f) * tr[:, i] + f * tr[:, i + 1]
    means, quats = [], []
    for x, q, logits in zip(splats["means"].numpy(), splats["quats"].numpy(), splats[motion.MOTION_KEY].numpy()):
        w = np.exp(logits - logits.max())
        w /= w.sum()
        means.append(
            sum(w[j] * (np_quat_to_rotmat(q_k[j]) @ (x - pivots[j]) + pivots[j] + t_k[j]) for j in range(len(w)))
        )
        a = w @ q_k
        a /= np.linalg.norm(a)
        aw, ax, ay, az = a
        left = np.array([[aw, -ax, -ay, -az], [ax, aw, -az, ay], [ay, az, aw, -ax], [az, -ay, ax, aw]])
        quats.append(left @ (q / np.linalg.norm(q)))
    return np.array(means), np.array(quats)


@pytest.mark.parametrize("time", [0.0, 0.37, 0.5, 1.0])
def test_deform_matches_the_per_gaussian_twin(time):
    splats, bases = random_moving(40, 5, 7, seed=int(time * 100) + 1)
    out = motion.deform(splats, bases, time)
    means, quats = twin(splats, bases, time)
    np.testing.assert_allclose(out["means"].numpy(), means, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(out["quats"].numpy(), quats, rtol=1e-10, atol=1e-10)
    assert motion.MOTION_KEY not in out and out["scales"] is splats["scales"]


def test_deform_gradients_match_finite_differences():
    splats, bases = random_moving(6, 3, 4, seed=3)
    inputs = (
        splats["means"],
        splats["quats"],
        splats[motion.MOTION_KEY],
        bases["rotations"],
        bases["translations"],
        bases["pivots"],
    )
    for t in inputs:
        t.requires_grad_(True)

    def f(means, quats, logits, rotations, translations, pivots):
        out = motion.deform(
            {"means": means, "quats": quats, motion.MOTION_KEY: logits},
            {"rotations": rotations, "translations": translations, "pivots": pivots},
            0.61,
        )
        return out["means"], out["quats"]

    assert torch.autograd.gradcheck(f, inputs)


def test_bases_at_rest_leave_gaussians_where_they_are():
    splats, _ = random_moving(30, 4, 5, seed=5)
    rest = {k: v.double() for k, v in motion.identity_bases(4, 5).items()}
    out = motion.deform(splats, rest, 0.3)
    torch.testing.assert_close(out["means"], splats["means"])
    torch.testing.assert_close(out["quats"], torch.nn.functional.normalize(splats["quats"], dim=-1))


def test_bases_to_original_commutes_with_the_normalisation():
    """Deforming in the normalised frame and moving back equals moving back and deforming."""
    splats, bases = random_moving(25, 4, 6, seed=7)
    scale, center = 0.37, torch.tensor([1.5, -2.0, 0.25], dtype=torch.float64)
    original = {**splats, "means": splats["means"] / scale + center}
    for time in (0.0, 0.45, 1.0):
        there = motion.deform(splats, bases, time)["means"] / scale + center
        here = motion.deform(original, motion.bases_to_original(bases, scale, center), time)["means"]
        torch.testing.assert_close(here, there, rtol=1e-9, atol=1e-9)


def test_initial_logits_give_each_point_mostly_to_its_nearest_centre():
    g = torch.Generator().manual_seed(0)
    blobs = torch.cat([torch.randn(100, 3, generator=g) * 0.05 + c for c in (-3.0, 0.0, 3.0)])
    logits, centres = motion.initial_blend(blobs, 3, g)
    w = torch.softmax(logits, dim=-1)
    owner = w.argmax(dim=1)
    assert owner[:100].unique().numel() == owner[100:200].unique().numel() == owner[200:].unique().numel() == 1
    assert len({int(owner[0]), int(owner[100]), int(owner[200])}) == 3 and float(w.max(dim=1).values.min()) > 0.9
    for i in range(3):  # each blob's motion turns about the blob's centre
        assert float((centres[owner[100 * i]] - blobs[100 * i : 100 * i + 100].mean(0)).norm()) < 0.02
    logits, centres = motion.initial_blend(blobs[:2], 4, g)  # fewer points than motions
    assert logits.shape == (2, 4) and centres.shape == (4, 3)


def test_smoothness_is_zero_for_linear_motion_only():
    bases = motion.identity_bases(2, 5)
    bases["translations"] = torch.linspace(0, 1, 5)[None, :, None].expand(2, 5, 3).clone()
    assert float(motion.smoothness(bases)) == 0.0
    bases["translations"][0, 2] += 0.5
    assert float(motion.smoothness(bases)) > 0.0


def checkpoint(n=5, k=3, knots=4):
    params = {
        "means": torch.randn(n, 3),
        "scales": torch.randn(n, 3),
        "quats": torch.randn(n, 4),
        "opacities": torch.randn(n),
        "sh0": torch.randn(n, 1, 3),
        motion.MOTION_KEY: torch.randn(n, k),
    }
    bases = motion.identity_bases(k, knots)
    return {"params": params, "bases": bases, "normalization": {"center": [0.0, 0.0, 0.0], "scale": 1.0}}


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda s: s.pop("bases"), "need both"),
        (lambda s: s["params"].pop(motion.MOTION_KEY), "need both"),
        (lambda s: s["bases"].update(rotations=torch.ones(3, 4, 3)), "shape"),
        (lambda s: s["bases"].update(translations=torch.ones(3, 5, 3)), "translations"),
        (lambda s: s["params"].update(motion=torch.ones(5, 2)), "'motion'"),
        (lambda s: s["bases"]["rotations"].__setitem__((0, 0, 0), float("nan")), "not finite"),
        (lambda s: s["bases"]["rotations"].__setitem__((1, 1), 0.0), "zero quaternion"),
        (lambda s: s["bases"].update(rotations=torch.ones(300, 4, 4)), "at most"),
        (lambda s: s.update(config={"rasterize_mode": "mip"}), "rasterize_mode 'mip'"),
        (lambda s: s.update(config=["antialiased"]), "'config' is not a dict"),
    ],
)
def test_checkpoint_checks_refuse_damaged_motions(damage, message):
    state = checkpoint()
    check_state("ok.pt", state)
    damage(state)
    with pytest.raises(InputError, match=message):
        check_state("bad.pt", state)


# ---------------------------------------------------------------------------------------------
# training, saving, rendering, exporting and viewing moving Gaussians
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dnerf_scene(tmp_path_factory):
    from splat.scenes.dynamic import write_dnerf_dataset

    root = tmp_path_factory.mktemp("dnerf")
    write_dnerf_dataset(root, n_train=24, n_test=4, width=48, height=36)
    return root


def test_monocular_data_trains_moving_gaussians_and_multiview_data_4d(dnerf_scene, tmp_path):
    from test_train import quick_config

    from splat.datasets import load_dataset
    from splat.scenes.dynamic import write_multiview_video_dataset
    from splat.train.config import resolve_model
    from splat.train.runs import new_trainer

    assert [resolve_model("auto", d, m) for d, m in ((False, False), (True, True), (True, False))] == [
        "3d",
        "motion",
        "4d",
    ]
    write_multiview_video_dataset(tmp_path / "multiview", n_cameras=4, n_times=3, width=24, height=18)
    multiview = load_dataset(tmp_path / "multiview")
    assert multiview.is_dynamic and not multiview.is_monocular
    assert load_dataset(dnerf_scene).is_monocular

    trainer = new_trainer(str(dnerf_scene), tmp_path / "run", quick_config(steps=400, init_points=3000))
    assert trainer.cfg.model == "motion" and trainer.moving and trainer.dynamic and not trainer.xyzt
    assert (
        trainer.params["means"].shape[1] == 3
        and trainer.params[motion.MOTION_KEY].shape[1] == trainer.cfg.motion_bases == 32
    )
    before = trainer.evaluate(save_renders=False)["eval"]["psnr"]
    after = trainer.train()["eval"]["psnr"]
    assert after > before + 3.0, f"test PSNR {before:.2f} -> {after:.2f} dB"
    moved = trainer.bases["translations"].detach()
    assert float(moved.abs().max()) > 1e-3, "the shared motions never moved"
    assert trainer.params[motion.MOTION_KEY].shape[0] == trainer.num_gaussians  # densification kept the rows


def test_motion_rate_holds_for_half_the_run_then_decays_to_its_final_value(dnerf_scene, tmp_path):
    from test_train import quick_config

    from splat.train.runs import new_trainer

    trainer = new_trainer(str(dnerf_scene), tmp_path / "run", quick_config(steps=10, init_points=300))
    c = trainer.cfg
    assert trainer.lr_motion_at(0) == trainer.lr_motion_at(5) == c.lr_motion
    assert trainer.lr_motion_at(5) > trainer.lr_motion_at(8) > trainer.lr_motion_at(10)
    assert trainer.lr_motion_at(10) == pytest.approx(c.lr_motion_final, rel=1e-12)
    trainer.train()
    rotations, translations = trainer.optimizers["bases"].param_groups
    assert rotations["lr"] == pytest.approx(trainer.lr_motion_at(9), rel=1e-12)  # the last step's rate
    assert translations["lr"] == pytest.approx(rotations["lr"] * trainer.scene_extent, rel=1e-12)
    frozen = new_trainer(str(dnerf_scene), tmp_path / "frozen", quick_config(steps=10, init_points=300, lr_motion=0.0))
    assert [frozen.lr_motion_at(s) for s in (0, 6, 10)] == [0.0, 0.0, 0.0]


def test_moving_resume_is_bit_exact(dnerf_scene, tmp_path):
    from helpers import train_until_interrupted
    from test_train import quick_config

    from splat.train.runs import new_trainer, restore_trainer

    cfg = dict(steps=16, refine_start=4, refine_every=4, checkpoint_every=8, keep_checkpoints=5, init_points=400)
    straight = new_trainer(str(dnerf_scene), tmp_path / "a", quick_config(**cfg))
    straight.train()
    interrupted = new_trainer(str(dnerf_scene), tmp_path / "b", quick_config(**cfg))
    train_until_interrupted(interrupted, 7)
    resumed = restore_trainer(tmp_path / "b")
    resumed.train()
    assert straight.num_gaussians != 400, "densification did not run"
    for k in straight.params:
        assert torch.equal(straight.params[k], resumed.params[k]), k
    for k in straight.bases:
        assert torch.equal(straight.bases[k], resumed.bases[k]), k


def test_saved_scene_renders_exports_and_views_as_trained(dnerf_scene, tmp_path):
    """splat.load (the dataset's frame) renders what the trainer renders (the normalised frame) at
    every time; export writes the 3D scene of a time and refuses to drop the motions; the
    browser's Gaussians follow the time slider."""
    from test_train import quick_config

    import splat
    from splat.formats.export import ExportError, export_scene
    from splat.train.runs import new_trainer
    from splat.viewer.client_splats import world_gaussians

    trainer = new_trainer(str(dnerf_scene), tmp_path / "run", quick_config(steps=40, init_points=1500))
    trainer.train()
    with torch.no_grad():  # motions that move things (a short run barely moves them)
        trainer.bases["translations"].add_(0.05 * torch.randn(trainer.bases["translations"].shape))
        trainer.bases["rotations"][..., 1:].add_(0.05 * torch.randn(trainer.bases["rotations"][..., 1:].shape))
    trainer.save_checkpoint()
    scene = splat.load(tmp_path / "run")
    assert scene.is_dynamic and scene.time_range == (0.0, 1.0) and "moving" in scene.summary
    norm = trainer.data.normalization
    for index in trainer.data.test_indices[:2] + trainer.data.train_indices[:2]:
        cam = norm.camera_to_original(trainer.data.camera(index))
        rgb = scene.render(cam, background=(1, 1, 1), time=cam.time)["rgb"]
        with torch.no_grad():
            ref, _, _ = trainer.render(index, torch.ones(3), scene.sh_degree)
        assert (rgb - ref.clamp(0, 1)).abs().max() < 2e-3
    cam = scene.cameras[0].resized(32, 24)
    a, b = scene.render(cam, time=0.0)["rgb"], scene.render(cam, time=1.0)["rgb"]
    assert not torch.equal(a, b)
    both = scene.render([cam, cam], time=[0.0, 1.0])["rgb"]
    assert torch.allclose(both[0], a, atol=1e-6) and torch.allclose(both[1], b, atol=1e-6)

    with pytest.raises(ExportError, match="pass --time"):
        export_scene(tmp_path / "run", tmp_path / "all.ply")
    out, n = export_scene(tmp_path / "run", tmp_path / "t1.ply", time=1.0)
    sliced = splat.load(out)
    assert not sliced.is_dynamic and n == scene.num_gaussians
    # moving Gaussians train antialiased (the run records it); splat files hold no rasterize mode
    assert scene.rasterize_mode == "antialiased" and sliced.rasterize_mode == "classic"
    scene.rasterize_mode = "classic"
    torch.testing.assert_close(sliced.render(cam)["rgb"], scene.render(cam, time=1.0)["rgb"], atol=2e-3, rtol=0)
    scene.rasterize_mode = "antialiased"

    g0, g1 = world_gaussians(scene, 0.0), world_gaussians(scene, 1.0)
    assert g0["means"].shape == g1["means"].shape and not torch.equal(g0["means"], g1["means"])


def test_rasterize_mode_follows_the_model():
    """auto: moving 3D Gaussians train and render antialiased, the other models classic; a mode
    given stays; a scene refuses a mode the rasterizer does not have."""
    from splat.train.config import resolve_rasterize_mode

    assert resolve_rasterize_mode("auto", "motion") == "antialiased"
    assert [resolve_rasterize_mode("auto", m) for m in ("3d", "4d", "field")] == ["classic"] * 3
    assert resolve_rasterize_mode("classic", "motion") == "classic"
    assert resolve_rasterize_mode("antialiased", "3d") == "antialiased"
    splats = {"means": torch.zeros(1, 3), "sh0": torch.zeros(1, 1, 3)}
    with pytest.raises(InputError, match="rasterize_mode"):
        GaussianScene(splats, rasterize_mode="mip")


def test_a_run_from_before_the_rasterize_mode_resumes_and_loads_classic(dnerf_scene, tmp_path):
    """Runs whose config.json and checkpoints predate the setting trained classic: they resume
    (the checkpoint's config record may lack newer settings) and load as classic."""
    from helpers import forget_setting
    from test_train import quick_config

    import splat
    from splat.train.runs import new_trainer, restore_trainer

    run = tmp_path / "run"
    trainer = new_trainer(str(dnerf_scene), run, quick_config(steps=6, init_points=500, rasterize_mode="classic"))
    trainer.train()
    forget_setting(run, "rasterize_mode")
    resumed = restore_trainer(run, {"steps": 8})
    assert resumed.cfg.model == "motion" and resumed.cfg.rasterize_mode == "classic" and resumed.step == 6
    assert splat.load(run).rasterize_mode == "classic"
