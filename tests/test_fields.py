"""Hash encoding and the fused hash-grid MLP (Warp, float32) against float64 torch twins.

Fresh random positions, tables and weights every run; small tables so that coarse levels are
densely indexed and fine ones hashed (both paths are exercised)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_close_rel

from splat.fields import HashGridEncoding, HashGridMLP
from splat.fields.fused import mlp_torch
from splat.fields.hash_grid import PRIMES, hash_encode_torch, level_layout

FWD_TOL = 1e-5
GRAD_TOL = 1e-4


def encoding_fwd_tol(enc: HashGridEncoding) -> float:
    """float32 rounds x * resolution at the finest level to ~eps32 * resolution per axis, and the
    interpolation weights move with it: measured max errors reach 1.1e-5 at resolution 76."""
    finest = max(scale for scale, *_ in enc.layout)
    return 8 * 2.0**-24 * finest


def test_level_layout_follows_tiny_cuda_nn():
    layout = level_layout(3, 16, 19, 16, 1.447269237440378)
    for level, (scale, res, entries, dense) in enumerate(layout):
        s = 16 * 1.447269237440378**level - 1
        assert scale == pytest.approx(s) and res == math.ceil(s) + 1
        assert entries == min((res**3 + 7) // 8 * 8, 2**19)
        assert dense == (res**3 <= entries)
    assert layout[0][3] and not layout[-1][3], "coarse levels dense, fine levels hashed"


def test_hash_of_a_known_vertex():
    """The spatial hash on one vertex, written out: (x * 1) ^ (y * 2654435761) ^ (z * 805459861) mod 2^32."""
    layout = [(1000.0, 1001, 64, False)]
    table = torch.zeros(64, 1, dtype=torch.float64)
    x, y, z = 123, 456, 789
    h = ((x * PRIMES[0]) ^ ((y * PRIMES[1]) & 0xFFFFFFFF) ^ ((z * PRIMES[2]) & 0xFFFFFFFF)) % 64
    table[h] = 1.0
    # a point exactly on that vertex: pos = p * 1000 + 0.5 = vertex + 0.5 -> weight 1/8 per corner...
    # use the cell corner
    p = torch.tensor([[(x - 0.5) / 1000, (y - 0.5) / 1000, (z - 0.5) / 1000]], dtype=torch.float64)
    assert hash_encode_torch(p, [table], layout).item() == pytest.approx(1.0)
    enc = HashGridEncoding(
        3, n_levels=1, n_features_per_level=1, log2_hashmap_size=6, base_resolution=1001, per_level_scale=1.0
    )
    with torch.no_grad():
        enc.embeddings[0].copy_(table.float())
    assert enc.layout[0][:2] == (1000.0, 1001) and not enc.layout[0][3]
    assert enc(p.float()).item() == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("dims", [2, 3])
def test_encoding_matches_twin(gen, dims, device="cpu"):
    enc = HashGridEncoding(
        dims,
        n_levels=6,
        n_features_per_level=2,
        log2_hashmap_size=10,
        base_resolution=4,
        per_level_scale=1.8,
        generator=gen,
    )
    assert any(d for *_, d in enc.layout) and not all(d for *_, d in enc.layout)
    with torch.no_grad():
        for t in enc.embeddings:
            t.copy_(torch.randn(t.shape, generator=gen))
    x = torch.rand((3000, dims), generator=gen)
    x[:20] = x[:20] * 1.4 - 0.2  # some outside [0, 1]^d: clamped
    enc.to(device)
    out = enc(x.to(device))
    assert out.device.type == torch.device(device).type
    out = out.cpu()
    tables64 = [t.detach().double().cpu().requires_grad_(True) for t in enc.embeddings]
    ref = hash_encode_torch(x.double(), tables64, enc.layout)
    assert out.shape == (3000, 12)
    assert_close_rel(out, ref, encoding_fwd_tol(enc), "encoding")
    up = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    (out.double() * up).sum().backward()
    (ref * up).sum().backward()
    for level, (a, b) in enumerate(zip(enc.embeddings, tables64)):
        assert b.grad.abs().max() > 0
        assert_close_rel(a.grad, b.grad, GRAD_TOL, f"d loss / d table {level}")


def clear_of_relu_kinks(x: torch.Tensor, net, margin: float = 1e-4) -> torch.Tensor:
    """The points whose every hidden pre-activation is clear of 0 (relative to the layer's scale):
    at a kink, float32 and float64 may legitimately pick different sides of the ReLU."""
    with torch.no_grad():
        h = hash_encode_torch(x.double(), [t.double() for t in net.encoding.embeddings], net.encoding.layout)
        ok = torch.ones(x.shape[0], dtype=torch.bool)
        for w in [net.w_in, *net.w_hidden]:
            pre = h @ w.double().t()
            ok &= (pre.abs() > margin * pre.abs().max()).all(dim=1)
            h = torch.relu(pre)
    assert ok.float().mean() > 0.5
    return x[ok]


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("dims, hidden, outputs", [(3, 1, 16), (2, 2, 3), (3, 3, 4)])
def test_fused_mlp_matches_twin(gen, dims, hidden, outputs, fused, device="cpu"):
    net = HashGridMLP(
        outputs,
        n_hidden_layers=hidden,
        n_input_dims=dims,
        n_levels=8,
        n_features_per_level=2,
        log2_hashmap_size=9,
        base_resolution=4,
        per_level_scale=1.6,
        generator=gen,
        fused=fused,
    )
    with torch.no_grad():
        for t in net.encoding.embeddings:
            t.copy_(torch.randn(t.shape, generator=gen) * 0.5)
    params = [*net.encoding.embeddings, net.w_in, net.w_hidden, net.w_out]
    L = len(net.encoding.embeddings)
    x = clear_of_relu_kinks(torch.rand((1500, dims), generator=gen), net)
    net.to(device)  # the same Parameter objects, now on `device`
    out = net(x.to(device))
    assert out.device.type == torch.device(device).type
    out = out.cpu()
    p64 = [p.detach().double().cpu().requires_grad_(True) for p in params]
    ref = mlp_torch(hash_encode_torch(x.double(), p64[:L], net.encoding.layout), *p64[L:])
    assert_close_rel(out, ref, FWD_TOL, "fused output")
    up = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    (out.double() * up).sum().backward()
    (ref * up).sum().backward()
    names = [f"table {k}" for k in range(L)] + ["w_in", "w_hidden", "w_out"]
    for name, a, b in zip(names, params, p64):
        if b.numel() == 0:
            continue
        assert b.grad.abs().max() > 0, f"degenerate test: zero reference gradient for {name}"
        assert_close_rel(a.grad, b.grad, GRAD_TOL, f"d loss / d {name}")


def test_forward_torch_is_the_same_network(gen):
    net = HashGridMLP(3, n_input_dims=2, n_levels=4, log2_hashmap_size=8, base_resolution=4, generator=gen)
    x = torch.rand((200, 2), generator=gen)
    assert_close_rel(net(x), net.forward_torch(x), FWD_TOL, "fused vs forward_torch")


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_input_dims"):
        HashGridEncoding(4)
    with pytest.raises(ValueError, match="per_level_scale"):
        HashGridEncoding(3, per_level_scale=0.5)
    with pytest.raises(ValueError, match="positions"):
        HashGridEncoding(3, n_levels=2, log2_hashmap_size=8)(torch.rand(10, 2))
    with pytest.raises(ValueError, match="at most 64"):
        HashGridMLP(3, n_levels=16, n_features_per_level=8)


def test_fit_image_cli(tmp_path):
    """The hash-encoding demo on a procedural 96x64 image: sharp stripes and a smooth gradient."""
    import json
    import subprocess
    import sys

    import imageio.v3 as iio
    import numpy as np

    y, x = np.mgrid[0:64, 0:96] / 64.0
    img = np.stack([0.5 + 0.5 * np.sin(20 * x), y, ((x * 8).astype(int) % 2) * 0.8 + 0.1], -1)
    iio.imwrite(tmp_path / "pattern.png", (img * 255).astype(np.uint8))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "splat.cli",
            "fit-image",
            str(tmp_path / "pattern.png"),
            "--steps",
            "150",
            "--batch",
            "4096",
            "--log2-hashmap-size",
            "14",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    out = tmp_path / "pattern.fit.png"
    history = json.loads(out.with_suffix(".json").read_text())["history"]
    assert iio.imread(out).shape == (64, 96, 3)
    assert history[-1]["psnr"] > 28.0, history
    (tmp_path / "bad.png").write_bytes(b"not a png")
    r = subprocess.run(
        [sys.executable, "-m", "splat.cli", "fit-image", str(tmp_path / "bad.png")], capture_output=True, text=True
    )
    assert r.returncode == 2 and "bad.png" in r.stderr and "Traceback" not in r.stderr
