"""`rasterize_4d`: render 4D (XYZT) Gaussians at given times through the ordinary 3D rasterizer.

Slicing (renderer/slicing.py) turns the 4D Gaussians into 3D ones at each requested time; those
that cannot show at that time (opacity x temporal weight below 1/255) are dropped; the rest go
through `rasterize` with explicit covariances. One call renders a batch of (camera, time) pairs:
the time-independent part of slicing runs once, then each distinct time is one `rasterize` call
over the cameras that share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .gaussian_math import ALPHA_THRESHOLD
from .rasterization import rasterize
from .slicing import covariance_4d, slice_at_times

_MIN_VISIBLE = float(ALPHA_THRESHOLD)


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
        colors: (N, D) features, or (N, K, 3) SH coefficients with `sh_degree` (view-dependent
            on the sliced positions).
        viewmats, Ks, width, height, backgrounds and every other keyword: as `rasterize`.
        times: a float (all cameras) or (C,) one time per camera.

    Returns:
        (colors (C, H, W, X), alphas (C, H, W, 1), meta): as `rasterize`, with meta["groups"]
        holding, per distinct time, the rasterizer's meta plus "time", "camera_ids" (which of the
        C cameras) and "gaussian_ids" (which of the N Gaussians were rendered, i.e. the rows of
        that group's means2d / radii). With a single time the group's entries are also at the top
        level, as for `rasterize`; meta["velocities"] (N, 3) is every Gaussian's velocity V / W
        (differentiable, for regularisers). Differentiable w.r.t. all Gaussian parameters and
        backgrounds.
    """
    times = _check_4d_inputs(means, quats_left, quats_right, scales, opacities, viewmats, times)
    covars3, velocities, time_vars = covariance_4d(scales, quats_left, quats_right)
    unique_times, inverse = torch.unique(times, return_inverse=True)
    means3, weights = slice_at_times(unique_times, means, velocities, time_vars)
    opacities = opacities.float()
    per_color_camera = colors.dim() == 3 and kwargs.get("sh_degree") is None

    outputs, alphas, groups = [None] * viewmats.shape[0], [None] * viewmats.shape[0], []
    for k in range(unique_times.numel()):
        cams = (inverse == k).nonzero().flatten()
        visible = opacities * weights[k]
        ids = (visible.detach() >= _MIN_VISIBLE).nonzero().flatten()
        if ids.numel() == 0:  # keep one (invisible) splat so the rasterizer has a scene to draw
            ids = visible.detach().argmax().reshape(1)
        group_colors = colors[cams][:, ids] if per_color_camera else colors[ids]
        bg = backgrounds[cams] if backgrounds is not None else None
        out, alpha, meta = rasterize(
            means3[k][ids],
            None,
            None,
            visible[ids],
            group_colors,
            viewmats[cams],
            Ks[cams],
            width,
            height,
            backgrounds=bg,
            covars=covars3[ids],
            **kwargs,
        )
        for j, c in enumerate(cams.tolist()):
            outputs[c], alphas[c] = out[j], alpha[j]
        groups.append({**meta, "time": float(unique_times[k]), "camera_ids": cams, "gaussian_ids": ids})
    meta = {"groups": groups, "times": times, "temporal_weights": weights, "velocities": velocities}
    if len(groups) == 1:
        meta = {**groups[0], **meta}
    return torch.stack(outputs), torch.stack(alphas), meta
