"""Projection, spherical harmonics and tile binning, each against its float64 torch twin and against
gsplat's pure-torch reference functions (an external oracle that runs on the CPU)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_close_rel, leaf32, leaf64, random_cameras, random_gaussians

from splat.renderer import fully_fused_projection, isect_offset_encode, isect_tiles, sh_colors
from splat.renderer import torch_impl as ti
from splat.renderer.binning import tile_grid

gsplat_impl = pytest.importorskip("gsplat.cuda._torch_impl", reason="gsplat (test oracle) is not installed")


def _scene(gen, C=3, N=300, W=64, H=48):
    views, Ks = random_cameras(gen, C, W, H)
    means, quats, scales, opacities = random_gaussians(gen, N)
    return views, Ks, means, quats, scales, opacities


@pytest.mark.parametrize("camera_model", ["pinhole", "ortho"])
@pytest.mark.parametrize("use_covars", [False, True])
@pytest.mark.parametrize("antialiased", [False, True])
@pytest.mark.parametrize("eps2d", [0.3, 0.05])
def test_projection_matches_torch_twin(gen, camera_model, use_covars, antialiased, eps2d):
    W, H = 64, 48
    views, Ks, means, quats, scales, opacities = _scene(gen, W=W, H=H)
    if camera_model == "ortho":
        Ks[:, :2, :2] *= 0.3
    covars6 = ti.covar_from_quat_scale(quats, scales)[:, [0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2]] if use_covars else None
    names = ["means", "covars"] if use_covars else ["means", "quats", "scales"]
    values = {"means": means, "quats": quats, "scales": scales, "covars": covars6}
    l32 = {k: leaf32(values[k]) for k in names}
    l64 = {k: leaf64(values[k]) for k in names}
    kw = dict(opacities=opacities, eps2d=eps2d, calc_compensations=antialiased, camera_model=camera_model)

    def call(fn, leaves, dtype):
        v = views.float().to(dtype)
        K = Ks.float().to(dtype)
        return fn(
            leaves["means"],
            leaves.get("quats"),
            leaves.get("scales"),
            v,
            K,
            W,
            H,
            covars=leaves.get("covars"),
            **{**kw, "opacities": opacities.float().to(dtype)},
        )

    out32 = call(fully_fused_projection, l32, torch.float32)
    out64 = call(ti.project_gaussians, l64, torch.float64)
    radii32, radii64 = out32[0], out64[0]
    assert (radii64 > 0).any(-1).float().mean() > 0.3, "degenerate test: few Gaussians visible"
    mismatch = (radii32 != radii64).any(-1)
    assert mismatch.float().mean() < 0.01, "radii differ beyond rounding at the ceil"
    keep = ~mismatch
    for name, a, b in zip(("means2d", "depths", "conics", "compensations"), out32[1:], out64[1:]):
        if a is None:
            assert b is None or not antialiased
            continue
        mask = keep.reshape(keep.shape + (1,) * (a.dim() - keep.dim())).expand_as(a)
        assert_close_rel(a, b, 1e-5, name, mask)

    loss32 = loss64 = 0
    for a, b in zip(out32[1:], out64[1:]):
        if a is None:
            continue
        w = torch.randn(a.shape, generator=gen, dtype=torch.float64)
        w = w * keep.reshape(keep.shape + (1,) * (a.dim() - keep.dim()))
        loss32 = loss32 + (a.double() * w).sum()
        loss64 = loss64 + (b * w).sum()
    loss32.backward()
    loss64.backward()
    for k in names:
        assert l64[k].grad.abs().max() > 0
        assert_close_rel(l32[k].grad, l64[k].grad, 1e-4, f"d loss / d {k}")


@pytest.mark.parametrize("camera_model", ["pinhole", "ortho"])
def test_projection_matches_gsplat(gen, camera_model):
    """Without opacities, bounding boxes use gsplat's fixed 3.33 sigma, as its torch reference."""
    W, H = 64, 48
    views, Ks, means, quats, scales, _ = _scene(gen, W=W, H=H)
    if camera_model == "ortho":
        Ks[:, :2, :2] *= 0.3
    means, quats, scales, views, Ks = (t.float() for t in (means, quats, scales, views, Ks))
    ours = fully_fused_projection(
        means, quats, scales, views, Ks, W, H, calc_compensations=True, camera_model=camera_model
    )
    covars, _ = gsplat_impl._quat_scale_to_covar_preci(quats.double(), scales.double(), compute_preci=False)
    theirs = gsplat_impl._fully_fused_projection(
        means.double(),
        covars,
        views.double(),
        Ks.double(),
        W,
        H,
        eps2d=0.3,
        calc_compensations=True,
        camera_model=camera_model,
    )
    visible = (theirs[0] > 0).all(-1)
    assert visible.float().mean() > 0.3
    agree = (ours[0] == theirs[0]).all(-1)
    assert agree.float().mean() > 0.99, "visibility / radii disagree with gsplat"
    both = visible & agree
    for name, a, b in zip(("means2d", "depths", "conics", "compensations"), ours[1:], theirs[1:]):
        mask = both.reshape(both.shape + (1,) * (a.dim() - both.dim())).expand_as(a)
        assert_close_rel(a, b, 1e-5, f"{name} vs gsplat", mask)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
@pytest.mark.parametrize("per_camera", [False, True])
def test_sh_matches_twin_and_gsplat(gen, degree, per_camera):
    C, N, K = 3, 200, 16
    views, _, means, *_ = _scene(gen, C=C, N=N)
    campos = -(views[:, :3, :3].transpose(1, 2) @ views[:, :3, 3:])[..., 0]
    coeffs = 0.5 * torch.randn(((C, N) if per_camera else (N,)) + (K, 3), generator=gen, dtype=torch.float64)
    radii = (torch.rand((C, N, 2), generator=gen) > 0.2).int() * 3
    m32, c32 = leaf32(means), leaf32(coeffs)
    m64, c64 = leaf64(means), leaf64(coeffs)
    out32 = sh_colors(degree, m32, campos.float(), c32, radii)
    out64 = ti.sh_colors(degree, m64, campos.float().double(), c64, radii)
    assert_close_rel(out32, out64, 1e-5, "SH colours")
    assert (out64 == 0).any() and (out64 > 0).any(), "degenerate test: clamp at 0 not exercised"

    dirs = m64.detach()[None] - campos.float().double()[:, None]
    shs = c64.detach() if per_camera else c64.detach()[None].expand(C, N, K, 3)
    theirs = torch.clamp_min(gsplat_impl._spherical_harmonics(degree, dirs, shs) + 0.5, 0.0)
    theirs = theirs * (radii > 0).any(-1, keepdim=True)
    assert_close_rel(out32, theirs, 1e-5, "SH colours vs gsplat")

    w = torch.randn(out32.shape, generator=gen, dtype=torch.float64)
    (out32.double() * w).sum().backward()
    (out64 * w).sum().backward()
    assert_close_rel(c32.grad, c64.grad, 1e-4, "d / d coeffs")
    if degree > 0:
        assert_close_rel(m32.grad, m64.grad, 1e-4, "d / d means (view direction)")
    else:
        assert m32.grad.abs().max() == 0


def _binning_inputs(gen, C=2, N=120, W=70, H=50, negative_depths=False):
    views, Ks, means, quats, scales, opacities = _scene(gen, C=C, N=N, W=W, H=H)
    radii, means2d, depths, _, _ = fully_fused_projection(
        means.float(), quats.float(), scales.float(), views.float(), Ks.float(), W, H, opacities=opacities.float()
    )
    if negative_depths:
        depths = (torch.rand(depths.shape, generator=gen) - 0.5) * 10
    return means2d, radii, depths


@pytest.mark.parametrize("tile_size", [16, 8])
@pytest.mark.parametrize("negative_depths", [False, True])
def test_binning_matches_twin_and_sorts_by_depth(gen, tile_size, negative_depths):
    W, H = 70, 50
    means2d, radii, depths = _binning_inputs(gen, W=W, H=H, negative_depths=negative_depths)
    tw, th = tile_grid(W, H, tile_size)
    counts, keys, ids = isect_tiles(means2d, radii, depths, tile_size, tw, th)
    counts_t, keys_t, ids_t = ti.isect_tiles(means2d, radii, depths, tile_size, tw, th)
    assert keys.shape[0] > 100
    assert torch.equal(counts, counts_t) and torch.equal(keys, keys_t) and torch.equal(ids, ids_t)
    # semantics: grouped by tile, front to back within a tile
    tiles = keys >> 32
    assert (tiles[1:] >= tiles[:-1]).all()
    d = depths.reshape(-1)[ids.long()]
    same = tiles[1:] == tiles[:-1]
    assert (d[1:][same] >= d[:-1][same]).all()
    offsets = isect_offset_encode(keys, depths.shape[0], tw, th)
    assert torch.equal(offsets, ti.isect_offset_encode(keys, depths.shape[0], tw, th))


def test_binning_matches_gsplat(gen):
    W, H, ts = 70, 50, 16
    means2d, radii, depths = _binning_inputs(gen, N=80, W=W, H=H)
    C = depths.shape[0]
    tw, th = tile_grid(W, H, ts)
    counts, keys, ids = isect_tiles(means2d, radii, depths, ts, tw, th)
    g_counts, g_keys, g_ids = gsplat_impl._isect_tiles(means2d, radii, depths, ts, tw, th)
    assert torch.equal(counts, g_counts)
    tile_bits = (tw * th).bit_length()
    hi = g_keys >> 32
    g_tiles = (hi >> tile_bits) * (tw * th) + (hi & ((1 << tile_bits) - 1))
    assert torch.equal(keys >> 32, g_tiles) and torch.equal(ids, g_ids)
    g_offsets = gsplat_impl._isect_offset_encode(g_keys, C, tw, th)
    assert torch.equal(isect_offset_encode(keys, C, tw, th), g_offsets)


def test_unnormalised_quaternions_are_normalised(gen):
    W, H = 32, 24
    views, Ks, means, quats, scales, opacities = _scene(gen, C=1, N=50, W=W, H=H)
    a = fully_fused_projection(means.float(), quats.float(), scales.float(), views.float(), Ks.float(), W, H)
    b = fully_fused_projection(
        means.float(), 7.5 * F.normalize(quats.float(), dim=-1), scales.float(), views.float(), Ks.float(), W, H
    )
    assert torch.equal(a[0], b[0])
    assert_close_rel(a[3], b[3], 1e-5, "conics")


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_sh_dc_and_rest_apart_equal_one_table(gen, degree):
    """The SH kernels read and write the DC band and the higher bands apart (the trainer's sh0 / shN,
    never concatenated): the same colours and the same gradients as one (N, 16, 3) table, zero
    gradients for the bands past the active degree, and every gradient entry written (no stale
    memory: the outputs are allocated empty)."""
    C, N = 2, 300
    views, _, means, *_ = _scene(gen, C=C, N=N)
    campos = -(views[:, :3, :3].transpose(1, 2) @ views[:, :3, 3:])[..., 0]
    table = 0.5 * torch.randn((N, 16, 3), generator=gen)
    radii = (torch.rand((C, N, 2), generator=gen) > 0.3).int() * 3
    m1, m2 = leaf32(means), leaf32(means)
    t1 = table.clone().requires_grad_()
    dc, rest = table[:, :1].clone().requires_grad_(), table[:, 1:].clone().requires_grad_()
    out1 = sh_colors(degree, m1, campos.float(), t1, radii)
    out2 = sh_colors(degree, m2, campos.float(), dc, radii, rest)
    assert torch.equal(out1, out2)
    w = torch.randn(out1.shape, generator=gen)
    for _ in range(2):  # twice: gradients written into freshly allocated, uninitialised memory
        for t in (m1, m2, t1, dc, rest):
            t.grad = None
        (out1 * w).sum().backward(retain_graph=True)
        (out2 * w).sum().backward(retain_graph=True)
        assert torch.equal(torch.cat([dc.grad, rest.grad], dim=1), t1.grad)
        assert torch.equal(m1.grad, m2.grad)
    K = (degree + 1) ** 2
    assert (t1.grad[:, K:] == 0).all() and t1.grad[:, :K].abs().sum() > 0
    assert (t1.grad[~(radii > 0).any(-1).any(0)] == 0).all()  # Gaussians no camera sees


def test_rasterize_takes_the_sh_bands_as_a_pair(gen):
    """`rasterize(..., colors=(sh0, shN))` renders and differentiates exactly as the concatenated
    table, and a pair of the wrong shape is refused with a message naming colors."""
    from splat.renderer import rasterize

    C, N, W, H = 2, 200, 40, 30
    views, Ks, means, quats, scales, opacities = _scene(gen, C=C, N=N, W=W, H=H)
    sh = 0.4 * torch.randn((N, 16, 3), generator=gen)
    one = sh.clone().requires_grad_()
    dc, rest = sh[:, :1].clone().requires_grad_(), sh[:, 1:].clone().requires_grad_()
    args = (means.float(), quats.float(), scales.float(), opacities.float())
    out1, a1, _ = rasterize(*args, one, views.float(), Ks.float(), W, H, sh_degree=3)
    out2, a2, _ = rasterize(*args, (dc, rest), views.float(), Ks.float(), W, H, sh_degree=3)
    assert torch.equal(out1, out2) and torch.equal(a1, a2) and out1.abs().sum() > 0
    w = torch.randn(out1.shape, generator=gen)
    (out1 * w).sum().backward()
    (out2 * w).sum().backward()
    assert torch.equal(torch.cat([dc.grad, rest.grad], dim=1), one.grad)
    with pytest.raises(ValueError, match="colors"):
        rasterize(*args, (dc, rest[:, :2]), views.float(), Ks.float(), W, H, sh_degree=3)
