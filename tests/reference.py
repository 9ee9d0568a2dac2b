"""Float64 brute-force reference renderer for tests.

Per pixel, every visible Gaussian of the camera sorted by depth and composited front to back with
the renderer's rules, one Gaussian at a time (no tiles, no sorting keys, no early-out tricks).
Projection and SH come from the pure-torch twins in `splat.renderer.torch_impl`, themselves
checked against gsplat's reference functions.

Besides the images it returns each pixel's `margin`: the smallest relative distance of any
discrete decision taken there (alpha vs 1/255, alpha vs the 0.99 clamp, transmittance vs 1e-4,
and the depth order of a blended Gaussian against its nearest neighbour in depth).
Where the margin is below float32 resolution, fp32 and fp64 may legitimately decide differently,
so comparisons leave those (rare) pixels out.
"""

from __future__ import annotations

import torch

from splat.renderer import torch_impl as ti

TRIU = ([0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2])

# Depth carries no exp() amplification, so float32 can only swap two Gaussians whose depths agree
# to ~1e-6 relative; scaled by this, such a near-tie reads as a margin below the 1e-4 tolerance.
DEPTH_ORDER_SCALE = 100.0


def composite_brute_force(means2d, conics, colors, opacities, depths, radii, width, height, backgrounds=None):
    """Returns render (C, H, W, D), alpha (C, H, W, 1), margin (C, H, W)."""
    C, N = depths.shape
    D = colors.shape[-1]
    colors_cn = colors if colors.dim() == 3 else colors[None].expand(C, N, D)
    dev, dt = means2d.device, means2d.dtype
    ys, xs = torch.meshgrid(torch.arange(height, device=dev), torch.arange(width, device=dev), indexing="ij")
    px = xs.reshape(-1).to(dt) + 0.5
    py = ys.reshape(-1).to(dt) + 0.5
    P = px.shape[0]
    renders, alphas, margins = [], [], []
    for c in range(C):
        visible = torch.nonzero((radii[c] > 0).all(-1))[:, 0]
        order = visible[torch.argsort(depths[c, visible].detach(), stable=True)]
        T = torch.ones(P, dtype=dt, device=dev)
        acc = torch.zeros((P, D), dtype=colors.dtype, device=dev)
        done = torch.zeros(P, dtype=torch.bool, device=dev)
        margin = torch.full((P,), float("inf"), dtype=torch.float64, device=dev)
        last_depth = torch.full((P,), float("nan"), dtype=torch.float64, device=dev)
        for g in order.tolist():
            dx = means2d[c, g, 0] - px
            dy = means2d[c, g, 1] - py
            a, b, cc = conics[c, g]
            power = 0.5 * (a * dx * dx + cc * dy * dy) + b * dx * dy
            raw = opacities[c, g] * torch.exp(-power)
            alpha = torch.clamp_max(raw, ti.ALPHA_MAX)
            active = ~done & (power >= 0) & (alpha >= ti.ALPHA_THRESHOLD)
            next_T = T * (1 - alpha)
            stop = active & (next_T <= ti.TRANSMITTANCE_MIN)
            blend = active & ~stop
            with torch.no_grad():
                live = ~done
                m = (raw / ti.ALPHA_THRESHOLD - 1).abs()
                m = torch.where(active, torch.minimum(m, (raw / ti.ALPHA_MAX - 1).abs()), m)
                m = torch.where(active, torch.minimum(m, (next_T / ti.TRANSMITTANCE_MIN - 1).abs()), m)
                # swapping with the previous Gaussian blended here is the only reorder that shows
                d = depths[c, g].detach().double()
                tie = DEPTH_ORDER_SCALE * (d - last_depth).abs() / d.abs().clamp(min=1e-12)
                m = torch.where(active & ~tie.isnan(), torch.minimum(m, tie), m)
                last_depth = torch.where(active, d, last_depth)
                margin = torch.where(live, torch.minimum(margin, m.double()), margin)
            weight = torch.where(blend, alpha * T, torch.zeros_like(T))
            acc = acc + weight[:, None] * colors_cn[c, g][None, :]
            T = torch.where(blend, next_T, T)
            done = done | stop
        if backgrounds is not None:
            acc = acc + T[:, None] * backgrounds[c][None, :]
        renders.append(acc.reshape(height, width, D))
        alphas.append((1 - T).reshape(height, width, 1))
        margins.append(margin.reshape(height, width))
    return torch.stack(renders), torch.stack(alphas), torch.stack(margins)


def reference_rasterize(
    means,
    quats,
    scales,
    opacities,
    colors,
    viewmats,
    Ks,
    width,
    height,
    near_plane=0.01,
    far_plane=1e10,
    eps2d=0.3,
    sh_degree=None,
    backgrounds=None,
    render_mode="RGB",
    rasterize_mode="classic",
    camera_model="pinhole",
    covars=None,
    radius_clip=0.0,
    tile_size=None,
):
    """The brute-force counterpart of `splat.rasterize` (any dtype). Returns render, alpha, margin.

    `tile_size` is accepted and ignored: without tiles, the tile size cannot change the image."""
    C, N = viewmats.shape[0], means.shape[0]
    covars6 = covars[:, TRIU[0], TRIU[1]] if covars is not None else None
    antialiased = rasterize_mode == "antialiased"
    radii, means2d, depths, conics, comps = ti.project_gaussians(
        means,
        quats,
        scales,
        viewmats,
        Ks,
        width,
        height,
        covars=covars6,
        opacities=opacities,
        eps2d=eps2d,
        near_plane=near_plane,
        far_plane=far_plane,
        radius_clip=radius_clip,
        calc_compensations=antialiased,
        camera_model=camera_model,
    )
    op = opacities[None].expand(C, N)
    if antialiased:
        op = op * comps
    if sh_degree is not None:
        R = viewmats[:, :3, :3]
        campos = -(R.transpose(1, 2) @ viewmats[:, :3, 3:])[..., 0]
        feats = ti.sh_colors(sh_degree, means, campos, colors, radii)
    else:
        feats = colors
    if render_mode in ("RGB+D", "RGB+ED"):
        if feats.dim() == 2:
            feats = feats[None].expand(C, N, feats.shape[-1])
        feats = torch.cat([feats, depths[..., None]], -1)
        if backgrounds is not None:
            backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(C, 1)], -1)
    elif render_mode in ("D", "ED"):
        feats = depths[..., None]
        if backgrounds is not None:
            backgrounds = backgrounds.new_zeros(C, 1)
    render, alpha, margin = composite_brute_force(means2d, conics, feats, op, depths, radii, width, height, backgrounds)
    if render_mode in ("ED", "RGB+ED"):
        render = torch.cat([render[..., :-1], render[..., -1:] / alpha.clamp(min=1e-10)], -1)
    return render, alpha, margin
