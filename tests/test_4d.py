"""4D Gaussians: the slicing kernels against float64 torch twins, the twins against the conditional
density of a 4D Gaussian, and `splat.rasterize_4d` end to end against the brute-force reference.

Fresh random inputs every run (seed printed on failure)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_close_rel, fraction, leaf32, leaf64, quiet_pixels, random_cameras, random_gaussians
from reference import reference_rasterize

import splat
from splat.renderer import covariance_4d, slice_at_times
from splat.renderer import torch_impl as ti
from splat.renderer.slicing import embed_3d_rotation

FWD_TOL = 1e-5
GRAD_TOL = 1e-4


def random_4d(gen, N: int, mixing: float = 0.4):
    """N random 4D Gaussians near the origin, spread over t in [0, 1], rotations that mix space
    and time by up to `mixing` (so they move), float64."""
    means3, _, scales3, opacities = random_gaussians(gen, N, spread=0.6, extremes=False)
    t = torch.rand((N, 1), generator=gen, dtype=torch.float64)
    scale_t = 0.08 + 0.4 * torch.rand((N, 1), generator=gen, dtype=torch.float64)

    def quat():
        q = torch.randn((N, 4), generator=gen, dtype=torch.float64) * mixing
        q[:, 0] += 1.0
        return q * (0.5 + torch.rand((N, 1), generator=gen, dtype=torch.float64))  # not normalised

    return {
        "means": torch.cat([means3, t], 1),
        "quats_left": quat(),
        "quats_right": quat(),
        "scales": torch.cat([scales3, scale_t], 1),
        "opacities": opacities,
    }


def test_isoclinic_rotations_are_rotations(gen):
    ql, qr = (
        torch.randn((50, 4), generator=gen, dtype=torch.float64),
        torch.randn((50, 4), generator=gen, dtype=torch.float64),
    )
    R = ti.rotation_4d(ql, qr)
    eye = torch.eye(4, dtype=torch.float64).expand(50, 4, 4)
    assert torch.allclose(R @ R.transpose(1, 2), eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(50, dtype=torch.float64), atol=1e-12)
    L, Rr = ti.left_isoclinic(ql), ti.right_isoclinic(qr)
    assert torch.allclose(L @ Rr, Rr @ L, atol=1e-12), "left and right isoclinic rotations commute"
    ident = torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64)
    assert torch.allclose(ti.rotation_4d(ident, ident), torch.eye(4, dtype=torch.float64))


def test_embedded_3d_rotation(gen):
    q = torch.randn((20, 4), generator=gen, dtype=torch.float64)
    R = ti.rotation_4d(*embed_3d_rotation(q))
    assert torch.allclose(R[:, :3, :3], ti.quat_to_rotmat(q), atol=1e-12)
    assert torch.allclose(R[:, 3], torch.tensor([0.0, 0, 0, 1], dtype=torch.float64).expand(20, 4), atol=1e-12)


def test_slicing_is_the_conditional_gaussian(gen):
    """p(x, t) of the 4D Gaussian, as a function of x at fixed t, equals the sliced 3D Gaussian
    times the temporal weight (up to the constant normaliser ratio): checked on random points."""
    g = random_4d(gen, 20, mixing=0.8)
    M = ti.rotation_4d(g["quats_left"], g["quats_right"]) * g["scales"][:, None, :]
    inv4 = torch.linalg.inv(M @ M.transpose(1, 2))
    cov3, vel, W = ti.covariance_4d(g["scales"], g["quats_left"], g["quats_right"])
    times = torch.rand(5, generator=gen, dtype=torch.float64)
    means3, weights = ti.slice_at_times(times, g["means"], vel, W)
    inv3 = torch.linalg.inv(cov3)
    for k in range(5):
        x = means3[k] + 0.3 * torch.randn((20, 3), generator=gen, dtype=torch.float64)
        d4 = torch.cat([x, times[k].expand(20, 1)], 1) - g["means"]
        log_p4 = -0.5 * torch.einsum("ni,nij,nj->n", d4, inv4, d4)
        d3 = x - means3[k]
        log_p3 = -0.5 * torch.einsum("ni,nij,nj->n", d3, inv3, d3) + torch.log(weights[k])
        assert torch.allclose(log_p4, log_p3, atol=1e-9, rtol=1e-9)


def _random_upstream(gen, *shapes):
    return [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]


def test_covariance_4d_kernel_matches_twin(gen, device="cpu"):
    g = random_4d(gen, 300)
    l32 = [leaf32(g[k], device) for k in ("scales", "quats_left", "quats_right")]
    l64 = [leaf64(g[k]) for k in ("scales", "quats_left", "quats_right")]
    out32 = covariance_4d(*l32)
    out64 = ti.covariance_4d(*l64)
    for name, a, b in zip(("covars3", "velocities", "time_vars"), out32, out64):
        assert_close_rel(a, b, FWD_TOL, name)
    up = _random_upstream(gen, (300, 3, 3), (300, 3), (300,))  # non-symmetric on purpose
    sum(((o.double().cpu() * u).sum() for o, u in zip(out32, up))).backward()
    sum(((o * u).sum() for o, u in zip(out64, up))).backward()
    for name, a, b in zip(("scales", "quats_left", "quats_right"), l32, l64):
        assert b.grad.abs().max() > 0
        assert_close_rel(a.grad, b.grad, GRAD_TOL, f"d loss / d {name}")


def test_slice_at_times_kernel_matches_twin(gen, device="cpu"):
    g = random_4d(gen, 400)
    cov3, vel, W = ti.covariance_4d(g["scales"], g["quats_left"], g["quats_right"])
    times = torch.rand(3, generator=gen, dtype=torch.float64)
    inputs = (g["means"], vel, W)
    l32, l64 = [leaf32(x, device) for x in inputs], [leaf64(x) for x in inputs]
    m32, w32 = slice_at_times(times.float().to(device), *l32)
    m64, w64 = ti.slice_at_times(times.float().double(), *l64)
    assert_close_rel(m32, m64, FWD_TOL, "means3")
    assert_close_rel(w32, w64, FWD_TOL, "weights")
    um, uw = _random_upstream(gen, (3, 400, 3), (3, 400))
    ((m32.double().cpu() * um).sum() + (w32.double().cpu() * uw).sum()).backward()
    ((m64 * um).sum() + (w64 * uw).sum()).backward()
    for name, a, b in zip(("means", "velocities", "time_vars"), l32, l64):
        assert_close_rel(a.grad, b.grad, GRAD_TOL, f"d loss / d {name}")


def reference_rasterize_4d(g64, colors, views, Ks, width, height, times, backgrounds):
    cov3, vel, W = ti.covariance_4d(g64["scales"], g64["quats_left"], g64["quats_right"])
    means3, weights = ti.slice_at_times(times, g64["means"], vel, W)
    renders, alphas, margins = [], [], []
    for c in range(views.shape[0]):
        r, a, m = reference_rasterize(
            means3[c],
            None,
            None,
            g64["opacities"] * weights[c],
            colors,
            views[c : c + 1],
            Ks[c : c + 1],
            width,
            height,
            covars=cov3,
            backgrounds=backgrounds[c : c + 1],
        )
        renders.append(r), alphas.append(a), margins.append(m)
    return torch.cat(renders), torch.cat(alphas), torch.cat(margins)


@pytest.mark.parametrize("compositing_variant", ["tile", "pixel"], indirect=True)
def test_rasterize_4d_matches_reference(gen, compositing_variant, device="cpu"):
    C, N, width, height = 3, 250, 36, 28
    g = random_4d(gen, N)
    colors = torch.rand((N, 3), generator=gen, dtype=torch.float64)
    views, Ks = random_cameras(gen, C, width, height)
    times = torch.tensor([0.2, 0.2, 0.7], dtype=torch.float64)  # two cameras share a time
    backgrounds = torch.rand((C, 3), generator=gen, dtype=torch.float64)
    inputs = {**g, "colors": colors, "backgrounds": backgrounds}
    l32 = {k: leaf32(v, device) for k, v in inputs.items()}
    l64 = {k: leaf64(v) for k, v in inputs.items()}
    out, alpha, meta = splat.rasterize_4d(
        **l32,
        viewmats=views.float().to(device),
        Ks=Ks.float().to(device),
        width=width,
        height=height,
        times=times.float().to(device),
    )
    assert out.device.type == torch.device(device).type
    out, alpha = out.cpu(), alpha.cpu()
    ref, ref_alpha, margin = reference_rasterize_4d(
        {k: l64[k] for k in g},
        l64["colors"],
        views.float().double(),
        Ks.float().double(),
        width,
        height,
        times.float().double(),
        l64["backgrounds"],
    )
    quiet = quiet_pixels(margin)
    assert fraction(quiet) > 0.97, "too many ambiguous pixels: margin logic broken?"
    assert ref_alpha.mean() > 0.2, "degenerate test scene"
    assert_close_rel(out, ref, FWD_TOL, "render_colors", quiet[..., None].expand_as(out))
    assert_close_rel(alpha, ref_alpha, FWD_TOL, "render_alphas", quiet[..., None])
    assert len(meta["groups"]) == 2 and meta["groups"][0]["camera_ids"].tolist() == [0, 1]
    w = torch.rand(out.shape, generator=gen, dtype=torch.float64) * quiet[..., None]
    wa = torch.rand(alpha.shape, generator=gen, dtype=torch.float64) * quiet[..., None]
    ((out.double() * w).sum() + (alpha.double() * wa).sum()).backward()
    ((ref * w).sum() + (ref_alpha * wa).sum()).backward()
    for name in inputs:
        assert l64[name].grad.abs().max() > 0, f"degenerate test: zero reference gradient for {name}"
        assert_close_rel(l32[name].grad, l64[name].grad, GRAD_TOL, f"d loss / d {name}")


def test_culling_drops_gaussians_out_of_their_time(gen):
    N = 200
    g = {k: v.float() for k, v in random_4d(gen, N, mixing=0.0).items()}
    g["scales"][:, 3] = 0.02  # short-lived
    views, Ks = random_cameras(gen, 1, 32, 24)
    _, _, meta = splat.rasterize_4d(
        **g, colors=torch.rand(N, 3), viewmats=views.float(), Ks=Ks.float(), width=32, height=24, times=0.5
    )
    ids = meta["gaussian_ids"]
    visible = g["opacities"] * torch.exp(-0.5 * (0.5 - g["means"][:, 3]) ** 2 / 0.02**2)
    assert set(ids.tolist()) == set((visible >= 0.99 / 255).nonzero().flatten().tolist())  # alpha's threshold
    assert 0 < ids.numel() < N // 2
    assert meta["means2d"].shape == (1, ids.numel(), 2)


def test_nothing_alive_renders_the_background(gen):
    g = {k: v.float() for k, v in random_4d(gen, 30, mixing=0.0).items()}
    g["scales"][:, 3] = 0.01
    g["means"][:, 3] = 0.0
    views, Ks = random_cameras(gen, 1, 16, 12)
    out, alpha, _ = splat.rasterize_4d(
        **g,
        colors=torch.rand(30, 3),
        viewmats=views.float(),
        Ks=Ks.float(),
        width=16,
        height=12,
        times=1.0,
        backgrounds=torch.tensor([[0.2, 0.4, 0.6]]),
    )
    assert alpha.abs().max() == 0 and torch.allclose(out, torch.tensor([0.2, 0.4, 0.6]).expand_as(out))


def test_static_gaussians_match_the_3d_rasterizer(gen):
    """Identity rotation and a huge time scale: the 4D renderer reproduces the 3D one at any t."""
    N = 150
    means, quats, scales, opacities = (x.float() for x in random_gaussians(gen, N, extremes=False))
    from splat.renderer.torch_impl import covar_from_quat_scale

    views, Ks = random_cameras(gen, 2, 32, 24)
    colors = torch.rand(N, 3)
    ref, ref_alpha, _ = splat.rasterize(
        means,
        None,
        None,
        opacities,
        colors,
        views.float(),
        Ks.float(),
        32,
        24,
        covars=covar_from_quat_scale(quats, scales),
    )
    q_left, q_right = embed_3d_rotation(quats)  # the 3D rotation on x, y, z; t left alone
    out, alpha, _ = splat.rasterize_4d(
        torch.cat([means, torch.rand(N, 1)], 1),
        q_left,
        q_right,
        torch.cat([scales, torch.full((N, 1), 1e4)], 1),
        opacities,
        colors,
        views.float(),
        Ks.float(),
        32,
        24,
        times=0.3,
    )
    assert torch.allclose(out, ref, atol=2e-5) and torch.allclose(alpha, ref_alpha, atol=2e-5)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda g: g.update(means=g["means"][:, :3]), "means: expected shape"),
        (lambda g: g["scales"].__setitem__((0, 3), -1.0), "scales"),
        (lambda g: g["quats_left"].__setitem__(0, 0.0), "zero quaternion"),
        (lambda g: g["means"].__setitem__((1, 3), math.nan), "means: contains NaN"),
        (lambda g: g.update(times=torch.tensor([0.1, 0.2, 0.3])), "times"),
        (lambda g: g.update(times=math.nan), "times"),
    ],
)
def test_bad_4d_input(gen, change, match):
    g = {k: v.float() for k, v in random_4d(gen, 10).items()}
    views, Ks = random_cameras(gen, 2, 16, 12)
    args = {
        **g,
        "colors": torch.rand(10, 3),
        "viewmats": views.float(),
        "Ks": Ks.float(),
        "width": 16,
        "height": 12,
        "times": 0.5,
    }
    change(args)
    with pytest.raises(ValueError, match=match):
        splat.rasterize_4d(**args)


def test_factor_rotation_4d_round_trips(gen):
    from splat.renderer.slicing import factor_rotation_4d

    ql, qr = (
        torch.randn((30, 4), generator=gen, dtype=torch.float64),
        torch.randn((30, 4), generator=gen, dtype=torch.float64),
    )
    R = ti.rotation_4d(ql, qr)
    a, b = factor_rotation_4d(R)
    assert torch.allclose(ti.rotation_4d(a, b), R, atol=1e-10)


def test_scale_space_4d_scales_the_covariance(gen):
    from splat.renderer.slicing import scale_space_4d

    g = random_4d(gen, 40, mixing=0.8)
    log_s = g["scales"].log()
    new_log_s, ql, qr = scale_space_4d(log_s, g["quats_left"], g["quats_right"], 2.5)

    def sigma(ls, a, b):
        M = ti.rotation_4d(a, b) * ls.exp()[:, None, :]
        return M @ M.transpose(1, 2)

    D = torch.diag(torch.tensor([2.5, 2.5, 2.5, 1.0], dtype=torch.float64))
    assert torch.allclose(sigma(new_log_s, ql, qr), D @ sigma(log_s, g["quats_left"], g["quats_right"]) @ D, atol=1e-9)


def test_live_gaussians_and_sh_pair(gen):
    """Culling before slicing: meta's live Gaussians are those some requested time shows, their
    velocities are stage 1's, and SH given as the (DC, rest) pair renders and differentiates as
    the concatenated coefficients do."""
    N, width, height = 300, 30, 22
    g = {k: v.float() for k, v in random_4d(gen, N).items()}
    g["scales"][:, 3] = 0.03 + 0.1 * torch.rand(N, generator=gen)
    views, Ks = random_cameras(gen, 2, width, height)
    times = torch.tensor([0.3, 0.8])
    sh = torch.randn(N, 16, 3, generator=gen) * 0.3
    renders = []
    for colors in ((sh[:, :1].clone(), sh[:, 1:].clone()), sh.clone()):
        leaves = [c.requires_grad_() for c in (colors if isinstance(colors, tuple) else (colors,))]
        view = {"viewmats": views.float(), "Ks": Ks.float(), "width": width, "height": height}
        out, _, meta = splat.rasterize_4d(**g, colors=colors, **view, times=times, sh_degree=3)
        (out * torch.linspace(0, 1, out.numel()).reshape(out.shape)).sum().backward()
        renders.append((out.detach(), torch.cat([v.grad for v in leaves], 1)))
    assert torch.equal(renders[0][0], renders[1][0]) and torch.allclose(renders[0][1], renders[1][1], atol=1e-6)
    _, velocities, time_vars = covariance_4d(g["scales"], g["quats_left"], g["quats_right"])
    live = meta["live_ids"]
    dt = times[:, None] - g["means"][None, :, 3]
    shown = (g["opacities"][None] * torch.exp(-0.5 * dt**2 / time_vars[None]) >= 1 / 255).any(0)
    assert 0 < live.numel() < N and set(live.tolist()) >= set(shown.nonzero().flatten().tolist())
    assert live.numel() - int(shown[live].sum()) <= 2  # beyond those shown: only the rounding slack
    assert torch.allclose(meta["velocities"], velocities[live], atol=1e-6)
    for group in meta["groups"]:
        assert set(group["gaussian_ids"].tolist()) <= set(live.tolist())
