"""End-to-end: `splat.rasterize` (Warp, float32) against the float64 brute-force reference.

Fresh random scenes and cameras every run (seed printed on failure). Forward within 1e-5 and
gradients of every differentiable input within 1e-4, both relative to the largest reference value
of the tensor compared.
"""

from __future__ import annotations

import pytest
import torch
from helpers import (
    assert_close_rel,
    depth_ties,
    fraction,
    leaf32,
    leaf64,
    quiet_pixels,
    random_cameras,
    random_gaussians,
)
from reference import reference_rasterize

import splat

FWD_TOL = 1e-5
GRAD_TOL = 1e-4
LARGE = 0.3  # scale of a Gaussian that covers much of the test images


def make_inputs(
    gen,
    *,
    C,
    N,
    width,
    height,
    sh_degree=None,
    D=3,
    per_camera_colors=False,
    K=None,
    camera_model="pinhole",
    use_covars=False,
    with_background=True,
    spread=0.7,
):
    views, Ks = random_cameras(gen, C, width, height)
    if camera_model == "ortho":
        Ks[:, 0, 0] *= 0.3
        Ks[:, 1, 1] *= 0.3
    for _ in range(20):  # redraw while two large Gaussians share a depth (helpers.depth_ties)
        means, quats, scales, opacities = random_gaussians(gen, N, spread=spread)
        if not depth_ties(means, views, among=scales.max(dim=-1).values > LARGE):
            break
    lead = (C, N) if per_camera_colors else (N,)
    if sh_degree is None:
        colors = torch.rand(lead + (D,), generator=gen, dtype=torch.float64)
        channels = D
    else:
        K = K or (sh_degree + 1) ** 2
        colors = 0.4 * torch.randn(lead + (K, 3), generator=gen, dtype=torch.float64)
        channels = 3
    inputs = {"means": means, "opacities": opacities, "colors": colors}
    if use_covars:
        from splat.renderer.torch_impl import covar_from_quat_scale

        inputs["covars"] = covar_from_quat_scale(quats, scales)
    else:
        inputs["quats"], inputs["scales"] = quats, scales
    if with_background:
        inputs["backgrounds"] = torch.rand((C, channels), generator=gen, dtype=torch.float64)
    return inputs, views, Ks


def run_both(gen, inputs, views, Ks, width, height, device="cpu", **kw):
    """Render with splat (fp32, on `device`) and the reference (fp64, CPU) from identical values;
    backprop the same random loss through both (ambiguous pixels weighted 0)."""
    leaves32 = {k: leaf32(v).to(device).detach().requires_grad_(True) for k, v in inputs.items()}
    leaves64 = {k: leaf64(v) for k, v in inputs.items()}
    args = dict(viewmats=views.float().to(device), Ks=Ks.float().to(device), width=width, height=height, **kw)
    args64 = dict(args, viewmats=views.float().double(), Ks=Ks.float().double())
    q32 = dict(quats=None, scales=None)
    out, alpha, meta = splat.rasterize(**{**q32, **leaves32}, **args)
    assert out.device.type == torch.device(device).type and alpha.device == out.device
    ref, ref_alpha, margin = reference_rasterize(**{**q32, **leaves64}, **args64)
    quiet = quiet_pixels(margin)
    assert fraction(quiet) > 0.97, f"too many ambiguous pixels ({1 - fraction(quiet):.2%}): margin logic broken?"
    w = torch.rand(out.shape, generator=gen, dtype=torch.float64) * quiet[..., None]
    wa = torch.rand(alpha.shape, generator=gen, dtype=torch.float64) * quiet[..., None]
    ((out.double().cpu() * w).sum() + (alpha.double().cpu() * wa).sum()).backward()
    ((ref * w).sum() + (ref_alpha * wa).sum()).backward()
    return out, alpha, meta, ref, ref_alpha, quiet, leaves32, leaves64


def check(gen, inputs, views, Ks, width, height, min_coverage=0.2, unused=(), **kw):
    out, alpha, meta, ref, ref_alpha, quiet, l32, l64 = run_both(gen, inputs, views, Ks, width, height, **kw)
    out, alpha = out.cpu(), alpha.cpu()
    assert out.shape == ref.shape and alpha.shape == (views.shape[0], height, width, 1)
    assert torch.isfinite(out).all() and torch.isfinite(alpha).all()
    assert ref_alpha.mean() > min_coverage, "degenerate test scene: almost nothing on screen"
    m = quiet[..., None]
    assert_close_rel(out, ref, FWD_TOL, "render_colors", m.expand_as(out))
    assert_close_rel(alpha, ref_alpha, FWD_TOL, "render_alphas", m)
    for name in l32:
        g32, g64 = l32[name].grad, l64[name].grad
        if name in unused:
            assert g32 is None and g64 is None, f"{name} should not influence this render"
            continue
        assert g32 is not None, f"no gradient reached {name}"
        assert g64.abs().max() > 0, f"degenerate test: zero reference gradient for {name}"
        assert_close_rel(g32.cpu(), g64, GRAD_TOL, f"d loss / d {name}")
    return out, alpha, meta


@pytest.fixture(autouse=True)
def _both_compositing_variants(compositing_variant):
    """Every test here runs with the CPU tile kernels and with the per-pixel (CUDA) kernels."""


@pytest.mark.parametrize("rasterize_mode", ["classic", "antialiased"])
@pytest.mark.parametrize("camera_model", ["pinhole", "ortho"])
def test_rgb_matches_reference(gen, rasterize_mode, camera_model):
    inputs, views, Ks = make_inputs(gen, C=3, N=200, width=40, height=30, camera_model=camera_model)
    check(gen, inputs, views, Ks, 40, 30, rasterize_mode=rasterize_mode, camera_model=camera_model)


@pytest.mark.parametrize("sh_degree", [0, 1, 2, 3])
def test_sh_degrees_match_reference(gen, sh_degree):
    inputs, views, Ks = make_inputs(gen, C=2, N=160, width=36, height=28, sh_degree=sh_degree)
    check(gen, inputs, views, Ks, 36, 28, sh_degree=sh_degree)


def test_per_camera_sh_with_extra_coefficients(gen):
    inputs, views, Ks = make_inputs(gen, C=2, N=120, width=32, height=24, sh_degree=2, K=16, per_camera_colors=True)
    check(gen, inputs, views, Ks, 32, 24, sh_degree=2)


@pytest.mark.parametrize("D,per_camera", [(1, False), (32, False), (5, True), (40, False)])
def test_feature_channels_match_reference(gen, D, per_camera):
    inputs, views, Ks = make_inputs(gen, C=2, N=150, width=33, height=21, D=D, per_camera_colors=per_camera)
    check(gen, inputs, views, Ks, 33, 21)


@pytest.mark.parametrize("render_mode", ["D", "ED", "RGB+D", "RGB+ED"])
def test_depth_modes_match_reference(gen, render_mode):
    inputs, views, Ks = make_inputs(gen, C=2, N=150, width=32, height=24)
    unused = ("colors", "backgrounds") if render_mode in ("D", "ED") else ()
    out, _, _ = check(gen, inputs, views, Ks, 32, 24, render_mode=render_mode, unused=unused)
    assert out.shape[-1] == (1 if render_mode in ("D", "ED") else 4)


def test_covariances_instead_of_quats_and_scales(gen):
    inputs, views, Ks = make_inputs(gen, C=2, N=150, width=32, height=24, use_covars=True)
    check(gen, inputs, views, Ks, 32, 24)


@pytest.mark.parametrize("tile_size", [8, 13, 24, 32])
def test_other_tile_sizes_and_ragged_images(gen, tile_size):
    """Tiles narrower than the CPU kernels' 16 lanes, and wider ones (32 lanes), on an image
    whose edges cut tiles short."""
    inputs, views, Ks = make_inputs(gen, C=2, N=150, width=37, height=23)
    check(gen, inputs, views, Ks, 37, 23, tile_size=tile_size)


def test_dense_overlap_exercises_early_termination(gen):
    """Hundreds of near-opaque splats stacked on the same pixels: most pixels saturate and stop
    early, and splat centres with opacity > 0.99 hit the alpha clamp."""
    inputs, views, Ks = make_inputs(gen, C=2, N=500, width=32, height=24, spread=0.25)
    inputs["opacities"] = 0.9 + 0.1 * torch.rand(500, generator=gen, dtype=torch.float64)
    inputs["scales"] = inputs["scales"] * 2.0
    _, alpha, meta = check(gen, inputs, views, Ks, 32, 24)
    assert (alpha > 0.999).float().mean() > 0.3, "scene did not saturate: the early-stop rule went untested"


def test_batch_of_cameras_equals_one_at_a_time(gen):
    inputs, views, Ks = make_inputs(gen, C=4, N=200, width=32, height=24)
    kw = {k: v.float() for k, v in inputs.items()}
    batch, batch_alpha, _ = splat.rasterize(**kw, viewmats=views.float(), Ks=Ks.float(), width=32, height=24)
    for c in range(4):
        one = dict(kw, backgrounds=kw["backgrounds"][c : c + 1])
        img, a, _ = splat.rasterize(
            **one, viewmats=views[c : c + 1].float(), Ks=Ks[c : c + 1].float(), width=32, height=24
        )
        assert torch.equal(img[0], batch[c]) and torch.equal(a[0], batch_alpha[c])


def test_meta_exposes_means2d_gradient_and_absgrad(gen):
    inputs, views, Ks = make_inputs(gen, C=2, N=150, width=32, height=24)
    kw = {k: leaf32(v) for k, v in inputs.items()}
    out, alpha, meta = splat.rasterize(**kw, viewmats=views.float(), Ks=Ks.float(), width=32, height=24, absgrad=True)
    means2d = meta["means2d"]
    means2d.retain_grad()
    out.sum().backward()
    visible = (meta["radii"] > 0).all(-1)
    assert means2d.grad is not None and means2d.grad.shape == (2, 150, 2)
    assert hasattr(means2d, "absgrad") and means2d.absgrad.shape == (2, 150, 2)
    assert (means2d.absgrad >= means2d.grad.abs() - 1e-6).all(), "absgrad must bound |grad| from above"
    assert means2d.absgrad[visible].sum() > means2d.grad[visible].abs().sum(), (
        "absgrad equals |grad|: not accumulated per pixel"
    )
    assert (means2d.grad[~visible] == 0).all()
    for key in (
        "radii",
        "depths",
        "conics",
        "opacities",
        "isect_ids",
        "flatten_ids",
        "isect_offsets",
        "tiles_per_gauss",
    ):
        assert key in meta
    assert meta["n_cameras"] == 2 and meta["width"] == 32 and meta["height"] == 24


@pytest.mark.parametrize("use_covars", [False, True])
def test_single_gaussian(gen, use_covars):
    inputs, views, Ks = make_inputs(gen, C=2, N=1, width=24, height=20, use_covars=use_covars)
    inputs["means"] = 0.05 * inputs["means"]
    inputs["opacities"] = torch.tensor([0.9], dtype=torch.float64)
    if use_covars:
        inputs["covars"] = torch.eye(3, dtype=torch.float64)[None] * 0.04 + 0.01
    else:
        inputs["scales"] = torch.tensor([[0.25, 0.15, 0.1]], dtype=torch.float64)  # anisotropic: quats matter
    check(gen, inputs, views, Ks, 24, 20, min_coverage=0.01)
