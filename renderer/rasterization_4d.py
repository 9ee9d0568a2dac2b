"""`rasterize_4d`: render 4D (XYZT) Gaussians at given times through the ordinary 3D rasterizer.

Slicing (renderer/slicing.py) turns the 4D Gaussians into 3D ones at each requested time; those
that cannot show at that time (opacity x temporal weight below 1/255) are dropped before slicing
(a cheap pass computes only their temporal variance), so that a step costs what its live
Gaussians cost; the rest go through `rasterize` with explicit covariances. One call renders a
batch of (camera, time) pairs: the time-independent part of slicing runs once, then each
distinct time is one `rasterize` call over the cameras that share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from splat.rotation import covariance_axes

from .gaussian_math import ALPHA_THRESHOLD
from .rasterization import rasterize
from .slicing import covariance_4d, live_at_times, slice_at_times

# drawn at a time: opacity x temporal weight >= this. Just below the rasterizer's alpha threshold:
# the few in between cannot colour a pixel, and rounding in the cheap culling pass cannot drop
# one that could
_MIN_VISIBLE = 0.99 * float(ALPHA_THRESHOLD)


def _check_4d_inputs(means, quats_left, quats_right, scales, opacities, viewmats, times) -> torch.Tensor:
    for name, t in (("means", means), ("quats_left", quats_left), ("quats_right", quats_right), ("scales", scales)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise ValueError(f"{name}: expected a floating-point torch.Tensor")
        if t.dim() != 2 or t.shape[-1] != 4:
            raise ValueError(f"{name}: expected shape (N, 4), got {tuple(t.shape)}")
        if t.shape[0] != means.shape[0]:
            raise ValueError(f"{name}: expected {means.shape[0]} rows like means, got {t.shape[0]}")
        if t.device != means.device:
            raise ValueError(f"{name}: on {t.device}, but means is on {means.device}")
        if not torch.isfinite(t).all():
            raise ValueError(f"{name}: contains NaN or Inf")
    if means.shape[0] == 0:
        raise ValueError("means: the scene is empty (0 Gaussians)")
    if (scales <= 0).any():
        raise ValueError("scales: expected activated (positive) scales")
    if (quats_left.norm(dim=-1) == 0).any() or (quats_right.norm(dim=-1) == 0).any():
        raise ValueError("quats_left/quats_right: zero quaternion")
    C = viewmats.shape[0] if isinstance(viewmats, torch.Tensor) and viewmats.dim() == 3 else None
    if C is None:
        raise ValueError("viewmats: expected shape (C, 4, 4)")
    times = torch.as_tensor(times, dtype=torch.float32, device=means.device).reshape(-1)
    if times.numel() == 1:
        times = times.expand(C)
    if times.numel() != C:
        raise ValueError(f"times: expected one time or one per camera ({C}), got {times.numel()}")
    if not torch.isfinite(times).all():
        raise ValueError("times: contains NaN or Inf")
    return times.contiguous()


def _rows(colors, ids: torch.Tensor, dim: int):
    """The rows `ids` of colour features along the Gaussian axis `dim` (a (DC, rest) SH pair: each)."""
    if isinstance(colors, tuple):
        return tuple(c.index_select(0, ids) for c in colors)
    return colors.index_select(dim, ids)


def _slice_live(times, means, quats_left, quats_right, scales, opacities, min_visible: float):
    """Slicing of the Gaussians some of `times` (T,) can show (opacity x temporal weight >=
    `min_visible`; culled first, from W alone): (live ids (M,), Sigma3 (M, 3, 3), velocities
    (M, 3), positions (T, M, 3), temporal weights (T, M), opacity x weight (T, M)),
    differentiable in the Gaussian parameters. With none live, the most opaque one stands in."""
    live = live_at_times(times, means, scales, quats_left, quats_right, opacities, min_visible)
    if live.numel() == 0:
        live = opacities.detach().argmax().reshape(1)
    covars3, velocities, time_vars = covariance_4d(
        scales.index_select(0, live), quats_left.index_select(0, live), quats_right.index_select(0, live)
    )
    means3, weights = slice_at_times(times, means.index_select(0, live), velocities, time_vars)
    return live, covars3, velocities, means3, weights, opacities.index_select(0, live)[None] * weights


def rasterize_4d(
    means: torch.Tensor,
    quats_left: torch.Tensor,
    quats_right: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    times: float | torch.Tensor | Sequence[float],
    backgrounds: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Render N 4D Gaussians into C (camera, time) pairs.

    Args:
        means: (N, 4) centres (x, y, z, t).
        quats_left, quats_right: (N, 4) wxyz quaternions of the 4D rotation L(q_l) R(q_r);
            normalised here.
        scales: (N, 4) activated scales (x, y, z, t axes before rotation).
        opacities: (N,) in [0, 1], before the temporal falloff.
        colors: (N, D) features, (C, N, D) per camera, or (N, K, 3) SH coefficients with
            `sh_degree` (view-dependent on the sliced positions), also as a (DC band (N, 1, 3),
            higher bands (N, K - 1, 3)) pair as `rasterize` takes them.
        viewmats, Ks, width, height, backgrounds and every other keyword: as `rasterize`.
        times: a float (all cameras) or (C,) one time per camera.

    Returns:
        (colors (C, H, W, X), alphas (C, H, W, 1), meta): as `rasterize`, with meta["groups"]
        holding, per distinct time, the rasterizer's meta plus "time", "camera_ids" (which of the
        C cameras) and "gaussian_ids" (which of the N Gaussians were rendered, i.e. the rows of
        that group's means2d / radii). With a single time the group's entries are also at the top
        level, as for `rasterize`. meta["live_ids"] (M,) are the Gaussians visible at one of the
        times at least (sorted; every group's "gaussian_ids" are among them), meta["velocities"]
        (M, 3) their velocities V / W (differentiable, for regularisers) and
        meta["temporal_weights"] (T, M) their weights at each distinct time. Differentiable
        w.r.t. all Gaussian parameters and backgrounds.
    """
    times = _check_4d_inputs(means, quats_left, quats_right, scales, opacities, viewmats, times)
    unique_times, inverse = torch.unique(times, return_inverse=True)
    per_color_camera = not isinstance(colors, tuple) and colors.dim() == 3 and kwargs.get("sh_degree") is None
    color_axis = 1 if per_color_camera else 0
    live, covars3, velocities, means3, weights, visible_at = _slice_live(
        unique_times, means, quats_left, quats_right, scales, opacities.float(), _MIN_VISIBLE
    )
    live_colors = _rows(colors, live, color_axis)

    outputs, alphas, groups = [None] * viewmats.shape[0], [None] * viewmats.shape[0], []
    for k in range(unique_times.numel()):
        cams = (inverse == k).nonzero().flatten()
        visible = visible_at[k]
        local = (visible.detach() >= _MIN_VISIBLE).nonzero().flatten()
        if local.numel() == 0:  # keep one (invisible) splat so the rasterizer has a scene to draw
            local = visible.detach().argmax().reshape(1)
        every = local.numel() == live.numel()  # one time (a training step), as a rule: no second gather
        take = (lambda x: x) if every else (lambda x, rows=local: x.index_select(0, rows))
        group_colors = live_colors if every else _rows(live_colors, local, color_axis)
        if per_color_camera:
            group_colors = group_colors[cams]
        bg = backgrounds[cams] if backgrounds is not None else None
        out, alpha, meta = rasterize(
            take(means3[k]),
            None,
            None,
            take(visible),
            group_colors,
            viewmats[cams],
            Ks[cams],
            width,
            height,
            backgrounds=bg,
            covars=take(covars3),
            **kwargs,
        )
        for j, c in enumerate(cams.tolist()):
            outputs[c], alphas[c] = out[j], alpha[j]
        groups.append({**meta, "time": float(unique_times[k]), "camera_ids": cams, "gaussian_ids": live[local]})
    meta = {"groups": groups, "times": times, "live_ids": live, "temporal_weights": weights, "velocities": velocities}
    if len(groups) == 1:
        meta = {**groups[0], **meta}
    return torch.stack(outputs), torch.stack(alphas), meta


def slice_gaussians(
    splats: dict[str, torch.Tensor], time: float, min_visible: float | None = None
) -> dict[str, torch.Tensor]:
    """The 3D Gaussians a 4D scene shows at `time`: pre-activation splats (means and log-scales
    (N, 4), quats, quats_right, opacity logits, SH) -> a 3D splat dict (means (M, 3), log-scales,
    wxyz quats of Sigma3's eigenvectors, opacity logits including the temporal falloff, SH), the
    same slicing the renderer does; Gaussians whose opacity x temporal weight is below
    `min_visible` (default: the renderer's alpha threshold, below which it drops them) are left out."""
    min_visible = float(ALPHA_THRESHOLD) if min_visible is None else min_visible
    with torch.no_grad():
        t = torch.tensor([float(time)], dtype=torch.float32, device=splats["means"].device)
        opacities = torch.sigmoid(splats["opacities"].float())
        live, covars3, _, means3, _, visible_at = _slice_live(
            t,
            splats["means"],
            splats["quats"],
            splats["quats_right"],
            splats["scales"].exp(),
            opacities,
            0.99 * min_visible,  # the slack `_MIN_VISIBLE` explains, below this exact threshold
        )
        visible = visible_at[0]
        kept = (visible >= min_visible).nonzero().flatten()
        keep = live[kept]
        log_scales, quats = covariance_axes(covars3[kept])
        opac = visible[kept].double().clamp(1e-7, 1 - 1e-7)
        return {
            "means": means3[0][kept].float(),
            "scales": log_scales.float(),
            "quats": quats.float(),
            "opacities": (opac / (1 - opac)).log().float(),
            "sh0": splats["sh0"][keep],
            "shN": splats["shN"][keep],
        }
