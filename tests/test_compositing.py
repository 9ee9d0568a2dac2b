"""The compositing stage on its own: `rasterize_to_pixels` against the brute-force reference, its
hard rules on hand-built cases, and the vectorised torch twin used as the benchmark peer."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_close_rel, fraction, leaf32, leaf64, quiet_pixels, random_cameras, random_gaussians
from reference import composite_brute_force

from splat.renderer import fully_fused_projection, isect_offset_encode, isect_tiles, rasterize_to_pixels
from splat.renderer import torch_impl as ti
from splat.renderer.binning import tile_grid


def projected_scene(gen, C=2, N=200, width=40, height=30, tile_size=16):
    views, Ks = random_cameras(gen, C, width, height)
    means, quats, scales, opacities = random_gaussians(gen, N)
    radii, means2d, depths, conics, _ = fully_fused_projection(
        means.float(),
        quats.float(),
        scales.float(),
        views.float(),
        Ks.float(),
        width,
        height,
        opacities=opacities.float(),
    )
    tw, th = tile_grid(width, height, tile_size)
    _, isect_ids, flatten_ids = isect_tiles(means2d, radii, depths, tile_size, tw, th)
    offsets = isect_offset_encode(isect_ids, C, tw, th)
    op = opacities.float()[None].expand(C, N).contiguous()
    return dict(
        means2d=means2d,
        conics=conics,
        opacities=op,
        depths=depths,
        radii=radii,
        isect_offsets=offsets,
        flatten_ids=flatten_ids,
    )


def render_warp(s, colors, width, height, tile_size=16, backgrounds=None, absgrad=False):
    return rasterize_to_pixels(
        s["means2d"],
        s["conics"],
        colors,
        s["opacities"],
        width,
        height,
        tile_size,
        s["isect_offsets"],
        s["flatten_ids"],
        backgrounds=backgrounds,
        absgrad=absgrad,
    )


@pytest.fixture(autouse=True)
def _both_compositing_variants(compositing_variant):
    """Every test here runs with the CPU tile kernels and with the per-pixel (CUDA) kernels."""


@pytest.mark.parametrize("D,per_camera", [(3, False), (1, True), (32, False)])
def test_compositing_matches_brute_force(gen, D, per_camera):
    C, N, W, H = 2, 200, 40, 30
    s = projected_scene(gen, C, N, W, H)
    colors = torch.rand(((C, N) if per_camera else (N,)) + (D,), generator=gen, dtype=torch.float64)
    bg = torch.rand((C, D), generator=gen, dtype=torch.float64)
    diff = {"means2d": s["means2d"], "conics": s["conics"], "opacities": s["opacities"], "colors": colors, "bg": bg}
    l32 = {k: leaf32(v) for k, v in diff.items()}
    l64 = {k: leaf64(v) for k, v in diff.items()}
    out, alpha = rasterize_to_pixels(
        l32["means2d"],
        l32["conics"],
        l32["colors"],
        l32["opacities"],
        W,
        H,
        16,
        s["isect_offsets"],
        s["flatten_ids"],
        backgrounds=l32["bg"],
    )
    ref, ref_alpha, margin = composite_brute_force(
        l64["means2d"],
        l64["conics"],
        l64["colors"],
        l64["opacities"],
        s["depths"].double(),
        s["radii"],
        W,
        H,
        l64["bg"],
    )
    quiet = quiet_pixels(margin)
    assert fraction(quiet) > 0.97 and ref_alpha.mean() > 0.2
    assert_close_rel(out, ref, 1e-5, "render", quiet[..., None].expand_as(out))
    assert_close_rel(alpha, ref_alpha, 1e-5, "alpha", quiet[..., None])
    w = torch.rand(out.shape, generator=gen, dtype=torch.float64) * quiet[..., None]
    wa = torch.rand(alpha.shape, generator=gen, dtype=torch.float64) * quiet[..., None]
    ((out.double() * w).sum() + (alpha.double() * wa).sum()).backward()
    ((ref * w).sum() + (ref_alpha * wa).sum()).backward()
    for k in diff:
        assert l64[k].grad.abs().max() > 0
        assert_close_rel(l32[k].grad, l64[k].grad, 1e-4, f"d loss / d {k}")


def test_absgrad_is_sum_of_per_pixel_magnitudes(gen):
    """With the loss on a single pixel, absgrad equals |grad|; over many pixels it is the sum of
    per-pixel magnitudes, checked against one backward pass per pixel."""
    C, N, W, H = 1, 60, 16, 16
    s = projected_scene(gen, C, N, W, H)
    colors = torch.rand((N, 3), generator=gen)
    pixels = [(3, 4), (8, 8), (12, 2)]
    expected = torch.zeros(C, N, 2, dtype=torch.float64)
    for y, x in pixels:
        m2d = s["means2d"].detach().clone().requires_grad_(True)
        out, _ = rasterize_to_pixels(
            m2d, s["conics"], colors, s["opacities"], W, H, 16, s["isect_offsets"], s["flatten_ids"]
        )
        out[0, y, x].sum().backward()
        expected += m2d.grad.double().abs()
    m2d = s["means2d"].detach().clone().requires_grad_(True)
    out, _ = rasterize_to_pixels(
        m2d, s["conics"], colors, s["opacities"], W, H, 16, s["isect_offsets"], s["flatten_ids"], absgrad=True
    )
    sum(out[0, y, x].sum() for y, x in pixels).backward()
    assert expected.max() > 0
    assert_close_rel(m2d.absgrad, expected, 1e-5, "absgrad")


def _one_camera(means2d, conics, opacities, W, H, tile_size=16):
    """Bin hand-made 2D Gaussians (given as lists) for one camera."""
    m = torch.tensor([means2d], dtype=torch.float32)
    c = torch.tensor([conics], dtype=torch.float32)
    o = torch.tensor([opacities], dtype=torch.float32)
    depths = torch.arange(1, m.shape[1] + 1, dtype=torch.float32)[None]
    radii = torch.full((1, m.shape[1], 2), 8, dtype=torch.int32)
    tw, th = tile_grid(W, H, tile_size)
    _, ids, flat = isect_tiles(m, radii, depths, tile_size, tw, th)
    return m, c, o, isect_offset_encode(ids, 1, tw, th), flat


def test_rules_alpha_clamp_and_pixel_centres():
    # An opaque splat centred on pixel (2, 1)'s centre (x + 0.5, y + 0.5) is clamped to alpha 0.99.
    m, c, o, offs, flat = _one_camera([[2.5, 1.5]], [[1.0, 0.0, 1.0]], [1.0], 8, 8)
    out, alpha = rasterize_to_pixels(m, c, torch.ones(1, 1), o, 8, 8, 16, offs, flat)
    assert alpha[0, 1, 2, 0].item() == pytest.approx(0.99, abs=1e-7)
    assert out[0, 1, 2, 0].item() == pytest.approx(0.99, abs=1e-7)
    # the neighbour one pixel right: power 0.5 -> alpha exp(-0.5)
    assert alpha[0, 1, 3, 0].item() == pytest.approx(float(torch.exp(torch.tensor(-0.5))), rel=1e-6)


def test_rules_skip_faint_splats():
    # opacity 1/255 * 1.01 at the centre passes; at power 0.02 (alpha ~ 1/255 * 0.99) it is skipped.
    op = 1.01 / 255
    m, c, o, offs, flat = _one_camera([[2.5, 2.5]], [[0.04, 0.0, 0.04]], [op], 8, 8)
    _, alpha = rasterize_to_pixels(m, c, torch.ones(1, 1), o, 8, 8, 16, offs, flat)
    assert alpha[0, 2, 2, 0].item() == pytest.approx(op, rel=1e-6)
    assert alpha[0, 2, 3, 0].item() == 0.0  # dx = 1: power 0.02 -> 0.99 * op / 1.01 < 1/255


def test_rules_stop_before_transmittance_falls_to_1e4():
    # Two splats at alpha 0.99 (T 1 -> 0.01 -> 1e-4 exactly): the second would take T to <= 1e-4,
    # so it is not blended and the pixel keeps T = 0.01. A third, fainter one is never reached.
    m, c, o, offs, flat = _one_camera([[0.5, 0.5]] * 3, [[1.0, 0.0, 1.0]] * 3, [1.0, 1.0, 0.5], 4, 4)
    colors = torch.tensor([[1.0], [10.0], [100.0]])
    out, alpha = rasterize_to_pixels(m, c, colors, o, 4, 4, 16, offs, flat)
    assert alpha[0, 0, 0, 0].item() == pytest.approx(0.99, abs=1e-7)
    assert out[0, 0, 0, 0].item() == pytest.approx(0.99, abs=1e-6)


def test_polynomial_exponential_of_the_tile_kernels():
    """`exp_neg`, the tile kernels' exp(-p), is within 3e-7 absolute of exp(-p) over the range
    alpha needs, p in [0, log 255] (the error of a pixel's colour follows the absolute error of
    alpha; float32 rounding of 1 is 6e-8), 3e-6 relative where alpha is small, exactly 1 at 0, on
    a fine grid and on random points; beyond p = 6 it holds exp(-6) (those pixels are skipped:
    their alpha is below 1/255 for any opacity <= 1)."""
    import warp as wp

    from splat.renderer import warp_runtime
    from splat.renderer.gaussian_math import exp_neg

    @wp.kernel
    def evaluate(offset: int, p: wp.array(dtype=float), out: wp.array(dtype=float)):
        i = wp.tid() + offset
        out[i] = exp_neg(p[i])

    p = torch.cat([torch.linspace(0, 5.6, 200_001), torch.rand(100_000) * 5.6, torch.tensor([6.0, 7.5, 1e3])])
    out = torch.empty_like(p)
    warp_runtime.launch(
        evaluate, p.numel(), [warp_runtime.array(p.contiguous())], [warp_runtime.array(out)], device=p.device
    )
    exact = torch.exp(-p.double().clamp(max=6.0))
    err = (out.double() - exact).abs()
    print(f"max absolute error {err.max():.2e}, relative {(err / exact).max():.2e}")
    assert err.max() < 3e-7, f"max absolute error {err.max():.2e}"
    assert (err / exact).max() < 3e-6, f"max relative error {(err / exact).max():.2e}"
    assert out[0].item() == 1.0
    assert out[-1].item() == out[-3].item()  # clamped


def test_reference_marks_depth_ties_only_where_both_splats_blend():
    """float32 may swap two splats whose depths agree to ~1e-6: the reference's margin must leave
    out exactly the pixels where both blend (there the order shows), and no others."""
    means2d = torch.tensor([[[3.5, 3.5], [6.5, 3.5], [20.5, 3.5]]], dtype=torch.float64)
    conics = torch.tensor([[[0.5, 0.0, 0.5]] * 3], dtype=torch.float64)
    opacities = torch.tensor([[0.8, 0.8, 0.8]], dtype=torch.float64)
    depths = torch.tensor([[2.0, 2.0 * (1 + 1e-8), 3.0]], dtype=torch.float64)  # a tie, then a clear third
    radii = torch.full((1, 3, 2), 8, dtype=torch.int32)
    colors = torch.eye(3, dtype=torch.float64)
    _, _, margin = composite_brute_force(means2d, conics, colors, opacities, depths, radii, 28, 8)
    quiet = quiet_pixels(margin)[0]
    ys, xs = torch.meshgrid(torch.arange(8) + 0.5, torch.arange(28) + 0.5, indexing="ij")

    def blends(i):
        power = 0.25 * ((xs - means2d[0, i, 0]) ** 2 + (ys - means2d[0, i, 1]) ** 2)
        return 0.8 * torch.exp(-power) >= 1 / 255

    assert (blends(0) & blends(1)).any() and (blends(2) & ~blends(1)).any()
    assert not quiet[blends(0) & blends(1)].any()
    assert quiet[~(blends(0) & blends(1))].all()


@pytest.mark.parametrize("D", [3, 4])
def test_torch_twin_matches_warp(gen, D):
    """The vectorised torch rasterizer (benchmark peer) renders the same image, with gradients."""
    C, N, W, H = 2, 300, 48, 40
    s = projected_scene(gen, C, N, W, H)
    colors = torch.rand((N, D), generator=gen)
    bg = torch.rand((C, D), generator=gen)
    c1, c2 = leaf32(colors), leaf32(colors)
    out, alpha = render_warp(s, c1, W, H, backgrounds=bg)
    out_t, alpha_t = ti.rasterize_to_pixels_torch(
        s["means2d"],
        s["conics"],
        c2,
        s["opacities"],
        W,
        H,
        16,
        s["isect_offsets"],
        s["flatten_ids"],
        backgrounds=bg,
        tiles_per_batch=3,
        chunk=16,
    )
    assert_close_rel(out_t, out, 1e-5, "torch twin render")
    assert_close_rel(alpha_t, alpha, 1e-5, "torch twin alpha")
    w = torch.rand(out.shape, generator=gen)
    (out * w).sum().backward()
    (out_t * w).sum().backward()
    assert_close_rel(c2.grad, c1.grad, 1e-4, "torch twin colour gradient")


def test_tile_rows_cover_every_pixel_of_thin_and_huge_splats(compositing_variant, monkeypatch):
    """The tile kernels visit only the rows each splat's ellipse can reach (solved with a 0.05 px
    margin) and evaluate alpha with a polynomial exponential; on splats from needle-thin to
    screen-filling, anisotropy up to e^8, their images and gradients equal the per-pixel
    kernels', which test every pixel with expf."""
    from splat.renderer import compositing

    if compositing_variant != "tile":
        pytest.skip("compares the tile kernels against the per-pixel kernels once")
    W, H = 64, 48
    for seed in range(8):
        g = torch.Generator().manual_seed(1000 + seed)
        N = 300
        means = torch.cat([torch.rand(N, 2, generator=g) * 1.6 - 0.8, torch.rand(N, 1, generator=g) * 2 + 2], 1)
        quats = torch.randn(N, 4, generator=g)
        scales = torch.exp(torch.randn(N, 3, generator=g) * 3.0 - 3.0)
        opacities = torch.rand(N, generator=g) * 0.99 + 0.01
        view = torch.eye(4)[None]
        K = torch.tensor([[[60.0, 0, 32], [0, 60.0, 24], [0, 0, 1]]])
        radii, means2d, depths, conics, _ = fully_fused_projection(
            means, quats, scales, view, K, W, H, opacities=opacities
        )
        tw, th = tile_grid(W, H, 16)
        _, isect_ids, flatten_ids = isect_tiles(means2d, radii, depths, 16, tw, th)
        offsets = isect_offset_encode(isect_ids, 1, tw, th)
        colors = torch.rand(N, 3, generator=g)
        v_out = torch.rand(1, H, W, 3, generator=g)
        results = {}
        for variant in ("tile", "pixel"):
            monkeypatch.setitem(compositing.KERNEL_VARIANT, "cpu", variant)
            m2d, col = means2d.detach().requires_grad_(), colors.clone().requires_grad_()
            out, alpha = rasterize_to_pixels(
                m2d, conics, col, opacities[None].contiguous(), W, H, 16, offsets, flatten_ids
            )
            (out * v_out).sum().backward()
            results[variant] = (out.detach(), alpha.detach(), m2d.grad, col.grad)
        (out_t, alpha_t, *grads_t), (out_p, alpha_p, *grads_p) = results["tile"], results["pixel"]
        torch.testing.assert_close(out_t, out_p, rtol=1e-6, atol=1e-6)  # same per-pixel arithmetic
        torch.testing.assert_close(alpha_t, alpha_p, rtol=1e-6, atol=1e-6)
        for tile, pixel in zip(grads_t, grads_p):  # summed in another order: float32 rounding apart
            torch.testing.assert_close(tile, pixel, rtol=1e-4, atol=1e-5 * float(pixel.abs().max()))
