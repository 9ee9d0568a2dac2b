"""Occupancy grid, ray marching and the radiance-field renderer against their torch twins."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_close_rel

from splat.fields.marching import OccupancyGrid, from_unit_torch, march, march_torch, ray_box, to_unit_torch
from splat.fields.radiance_field import FieldSpec, RadianceField, ray_range, render_rays, render_rays_train
from splat.fields.volume_rendering import composite_rays_torch
from splat.renderer.torch_impl import sh_basis


def random_rays(gen, R: int, radius: float = 1.0):
    """Rays from a sphere of cameras towards jittered points near the centre."""
    o = torch.nn.functional.normalize(torch.randn((R, 3), generator=gen), dim=1) * radius
    target = (torch.rand((R, 3), generator=gen) - 0.5) * 0.6
    return o, torch.nn.functional.normalize(target - o, dim=1)


def blob_grid(gen, res: int, contract: bool, bound: float) -> OccupancyGrid:
    grid = OccupancyGrid(res, bound=bound, contract=contract)
    occ = (torch.rand(res**3, generator=gen) < 0.35).to(torch.uint8)
    grid.occupied = occ
    return grid


def test_contraction_twins():
    x = torch.tensor([[0.2, -0.1, 0.05], [3.0, 0.5, -1.0], [-50.0, 2.0, 1.0]], dtype=torch.float64)
    u = to_unit_torch(x, 0.5, True)
    assert ((u >= 0) & (u <= 1)).all()
    assert torch.allclose(u[0], x[0] / 0.5 / 4 + 0.5)  # inside the box: linear
    assert torch.allclose(from_unit_torch(u, 0.5, True), x)
    assert torch.allclose(from_unit_torch(to_unit_torch(x, 4.0, False), 4.0, False), x)
    # continuous across the box surface
    edge = torch.tensor([[1.0, 0.3, 0.0]], dtype=torch.float64) * 0.5
    assert torch.allclose(to_unit_torch(edge * (1 + 1e-9), 0.5, True), to_unit_torch(edge, 0.5, True), atol=1e-8)


@pytest.mark.parametrize("contract", [False, True])
def test_march_matches_twin(gen, contract, device="cpu"):
    res, bound = 16, 0.4
    grid = blob_grid(gen, res, contract, bound)
    occupied = grid.occupied
    grid.occupied = occupied.to(device)
    if contract:
        grid.cone_angle, grid.max_step = 1 / 32, 0.5
    spec = FieldSpec(bound=bound, contract=contract)
    o, d = random_rays(gen, 40)
    t0, t1 = ray_range(spec, o, d)
    if contract:
        t1 = torch.full_like(t1, 30.0)
    offsets, t_starts, t_ends, t_next = (x.cpu() for x in march(grid, *(x.to(device) for x in (o, d, t0, t1))))
    assert t_starts.numel() > 100
    matched = 0
    for r in range(o.shape[0]):
        ref, ref_next = march_torch(
            occupied,
            res,
            bound,
            contract,
            grid.min_step,
            grid.max_step,
            grid.cone_angle,
            o[r].double(),
            d[r].double(),
            float(t0[r]),
            float(t1[r]),
            1 << 12,
        )
        a, b = int(offsets[r]), int(offsets[r + 1])
        if b - a != len(ref):
            continue  # a midpoint within float32 rounding of a cell wall
        starts = torch.tensor([s for s, _ in ref], dtype=torch.float64)
        ends = torch.tensor([e for _, e in ref], dtype=torch.float64)
        if torch.allclose(t_starts[a:b].double(), starts, atol=1e-4) and torch.allclose(
            t_ends[a:b].double(), ends, atol=1e-4
        ):
            matched += 1
    assert matched >= 36, f"only {matched} of 40 rays march like the twin"


def test_rounds_of_inference_marching_equal_one_packed_march(gen):
    grid = blob_grid(gen, 16, False, 0.4)
    o, d = random_rays(gen, 30)
    t0, t1 = ray_box(o, d, 0.4, 0.05)
    offsets, t_starts, _, _ = march(grid, o, d, t0, t1)
    t = t0.clone()
    rounds = [[] for _ in range(30)]
    for _ in range(200):
        counts, starts, _, t_next = march(grid, o, d, t, t1, capacity=7)
        for r in range(30):
            rounds[r] += starts[r, : int(counts[r])].tolist()
        t = t_next
        if (counts == 0).all():
            break
    for r in range(30):
        assert torch.allclose(torch.tensor(rounds[r]), t_starts[int(offsets[r]) : int(offsets[r + 1])], atol=1e-5)


def test_occupancy_grid_finds_a_sphere_and_decays(gen):
    grid = OccupancyGrid(32, bound=1.0, warmup_steps=16, update_every=4)
    radius = 0.3

    def sphere(u):  # density 100 inside a sphere of radius 0.3 (world units), 0 elsewhere
        return 100.0 * (from_unit_torch(u, 1.0, False).norm(dim=1) < radius).float()

    assert not grid.update(3, sphere, gen), "updates happen every `update_every` steps only"
    assert grid.update(0, sphere, gen)
    res = 32
    ijk = torch.stack(torch.meshgrid(*[torch.arange(res)] * 3, indexing="ij"), -1).reshape(-1, 3)
    centres = from_unit_torch((ijk + 0.5) / res, 1.0, False).norm(dim=1)
    half_diag = math.sqrt(3) / res  # half a cell diagonal in world units (cells are 2/res wide)
    occupied = grid.occupied.bool()
    assert occupied[centres < radius - half_diag].all()
    assert not occupied[centres > radius + half_diag].any()
    before = grid.density.clone()
    assert grid.update(16, lambda u: torch.zeros(u.shape[0]), gen)  # after warm-up: a quarter of the cells
    changed = grid.density != before
    assert torch.allclose(grid.density[changed], before[changed] * grid.decay)
    assert 0.15 < changed.float().sum() / (before > 0).float().sum() < 0.35


def random_field(gen, fused: bool = False) -> RadianceField:
    spec = FieldSpec(
        bound=0.4, n_levels=4, log2_hashmap_size=10, base_resolution=4, max_resolution=32, grid_resolution=16
    )
    field = RadianceField(spec, generator=gen, fused=fused)
    with torch.no_grad():  # features of order 1 and densities from ~0 to very dense: rays end early
        for table in field.density_net.encoding.embeddings:
            table.copy_(torch.randn(table.shape, generator=gen))
        field.density_net.w_out[0] = field.density_net.w_out[0].abs() * 0.8
    return field


def test_inference_render_matches_training_render(gen):
    field = random_field(gen)
    grid = field.make_grid("cpu")
    grid.update(0, field.density, gen)
    bg = torch.rand(3, generator=gen)
    for _ in range(5):  # rays that end opaque and rays that do not (a rare draw has too few of the latter)
        o, d = random_rays(gen, 300)
        train = render_rays_train(field, grid, o, d, bg.expand(300, 3))
        if (train["opacity"] > 0.999).sum() > 20 and (train["opacity"] < 0.99).sum() >= 3:
            break
    infer = render_rays(field, grid, o, d, bg, samples_per_round=5)
    assert infer["samples"] < train["marched"] and train["samples"] < train["marched"], (
        "early termination skips samples"
    )
    assert (train["opacity"] > 0.999).sum() > 20 and (train["opacity"] < 0.99).sum() >= 3
    for k in ("rgb", "opacity", "depth"):
        assert torch.allclose(infer[k], train[k].detach(), atol=2e-5), k


@pytest.mark.parametrize("fused", [False, True])
def test_training_render_gradients_match_float64_twin(gen, fused):
    field = random_field(gen, fused=fused)
    grid = field.make_grid("cpu")
    grid.update(0, field.density, gen)
    R = 48
    o, d = random_rays(gen, R)
    bg = torch.rand((R, 3), generator=gen)
    out = render_rays_train(field, grid, o, d, bg)

    # the same samples through a float64 copy of the network and the torch compositing twin
    t0, t1 = ray_range(field.spec, o, d)
    offsets, ts, te, _ = march(grid, o, d, t0, t1)
    ids = torch.repeat_interleave(torch.arange(R), (offsets[1:] - offsets[:-1]).long())
    u = field.to_unit(o[ids] + (0.5 * (ts + te))[:, None] * d[ids]).double()  # the kernels' float32 positions
    net = field.density_net
    leaves = [
        p.detach().double().requires_grad_(True)
        for p in (*net.encoding.embeddings, net.w_in, net.w_hidden, net.w_out, *field.color_net.parameters())
    ]
    L = len(net.encoding.embeddings)
    from splat.fields.fused import mlp_torch
    from splat.fields.hash_grid import hash_encode_torch

    encoded = hash_encode_torch(u, leaves[:L], net.encoding.layout)
    h = mlp_torch(encoded, *leaves[L : L + 3])
    w1, w2, w3 = leaves[L + 3 :]
    feats = torch.cat([h[:, 1:], sh_basis(3, d[ids].double())], 1)
    pre1 = feats @ w1.t()
    pre2 = torch.relu(pre1) @ w2.t()
    rgb = torch.sigmoid(torch.relu(pre2) @ w3.t())
    color, opacity, depth = composite_rays_torch(offsets, torch.exp(h[:, 0]), rgb, ts.double(), te.double())
    ref = {"rgb": color + (1 - opacity)[:, None] * bg.double(), "opacity": opacity, "depth": depth}

    # float32 and float64 may take different sides of a ReLU at a pre-activation within rounding
    # of 0; rays with such a sample are left out of the loss (forward values are still compared)
    kink = torch.zeros(ids.shape[0], dtype=torch.bool)
    for pre in (encoded @ leaves[L].t(), pre1, pre2):
        kink |= (pre.abs() < 2e-6 * pre.abs().max()).any(dim=1).detach()
    in_loss = torch.ones(R)
    in_loss[ids[kink]] = 0
    assert in_loss.sum() >= R // 8
    ups = [
        torch.randn(out[k].shape, generator=gen) * (in_loss[:, None] if k == "rgb" else in_loss)
        for k in ("rgb", "opacity", "depth")
    ]
    sum((out[k] * u_).sum() for k, u_ in zip(("rgb", "opacity", "depth"), ups)).backward()
    for k in ref:
        assert_close_rel(out[k].detach(), ref[k].detach(), 1e-4, k)
    sum((ref[k] * u_.double()).sum() for k, u_ in zip(("rgb", "opacity", "depth"), ups)).backward()
    params = [*net.encoding.embeddings, net.w_in, net.w_hidden, net.w_out, *field.color_net.parameters()]
    checked = 0
    for i, (p, q) in enumerate(zip(params, leaves)):
        if p.numel() == 0:  # w_hidden of a one-hidden-layer MLP
            continue
        assert q.grad.abs().max() > 0, f"parameter {i} gets no gradient"
        assert_close_rel(p.grad, q.grad, 5e-3, f"parameter {i}")
        checked += 1
    assert checked == len(params) - 1
