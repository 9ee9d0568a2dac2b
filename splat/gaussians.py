"""Gaussian parameters: their names, activations, SH colour constants, the one rasterize call of
a parameter set, and the move from the normalised training frame back to the dataset's frame.

Parameters are pre-activation (the PLY layout), as trained and as `GaussianScene` keeps them:
means (N, 3), scales (N, 3) log, quats (N, 4) wxyz unnormalised (the renderer normalises them),
opacities (N,) logit, sh0 (N, 1, 3) SH DC coefficients, shN (N, (D+1)^2 - 1, 3) higher bands.
4D (dynamic) Gaussians: means (N, 4) xyzt, scales (N, 4) log, quats (N, 4) the left and
quats_right (N, 4) the right quaternion of the 4D rotation (renderer/slicing.py); the rest as in 3D.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from splat.renderer.constants import SH_C0

__all__ = [
    "PARAM_NAMES",
    "PARAM_NAMES_4D",
    "activated",
    "gaussians_to_original",
    "is_dynamic",
    "rasterize_gaussians",
    "rgb_to_sh",
    "sh_degree_of",
    "sh_to_rgb",
]

PARAM_NAMES = ("means", "scales", "quats", "opacities", "sh0", "shN")
PARAM_NAMES_4D = PARAM_NAMES + ("quats_right",)


def is_dynamic(params) -> bool:
    """4D Gaussians (means with a time column)?"""
    return params["means"].shape[1] == 4


def sh_degree_of(params) -> int:
    """The SH degree the coefficients hold: (D+1)^2 - 1 higher bands in shN."""
    return int(round(math.sqrt(params["shN"].shape[1] + 1))) - 1


def rgb_to_sh(rgb: torch.Tensor) -> torch.Tensor:
    """The SH DC coefficient whose colour (seen from anywhere) is `rgb`."""
    return (rgb - 0.5) / SH_C0


def sh_to_rgb(sh0: torch.Tensor) -> torch.Tensor:
    return sh0 * SH_C0 + 0.5


def activated(params, sh_pair: bool = False) -> dict[str, torch.Tensor]:
    """Render-ready tensors: activated scales and opacities, SH coefficients (N, K, 3) (with
    `sh_pair` the (DC, rest) pair the rasterizers also take, without concatenating them); for 4D
    models the keyword arguments of `splat.renderer.rasterize_4d`."""
    rotations = (
        {"quats_left": params["quats"], "quats_right": params["quats_right"]}
        if is_dynamic(params)
        else {"quats": params["quats"]}
    )
    return {
        "means": params["means"],
        **rotations,
        "scales": torch.exp(params["scales"]),
        "opacities": torch.sigmoid(params["opacities"]),
        "colors": (params["sh0"], params["shN"]) if sh_pair else torch.cat([params["sh0"], params["shN"]], dim=1),
    }


def rasterize_gaussians(
    params,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    *,
    sh_degree: int,
    backgrounds: torch.Tensor,
    times: float | torch.Tensor | None = None,
    **options: Any,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Activate `params` and rasterize them (`rasterize` for 3D, `rasterize_4d` at `times` for 4D
    Gaussians); differentiable. `options`: the rasterizers' other keywords (render_mode,
    camera_model, tile_size, absgrad). Returns (colors, alphas, info) as the rasterizers do."""
    from splat.renderer.rasterization import rasterize
    from splat.renderer.rasterization_4d import rasterize_4d

    view = dict(
        viewmats=viewmats, Ks=Ks, width=width, height=height, sh_degree=sh_degree, backgrounds=backgrounds, **options
    )
    if is_dynamic(params):
        return rasterize_4d(**activated(params, sh_pair=True), **view, times=0.0 if times is None else times)
    # the SH bands go in as the pair they are kept as: no (N, 16, 3) concatenation every step
    scales, opacities = torch.exp(params["scales"]), torch.sigmoid(params["opacities"])
    return rasterize(params["means"], params["quats"], scales, opacities, (params["sh0"], params["shN"]), **view)


def gaussians_to_original(params: dict, normalization) -> dict:
    """Gaussian parameters (means, log-scales, ...) from the normalised frame of `normalization`
    (a `splat.datasets.Normalization`: world_normalised = scale * (world_original - center)) back
    to the dataset's frame: positions and sizes change; opacity and SH do not. 4D Gaussians
    (means (N, 4)) keep their time axis; their rotation may change too (see scale_space_4d)."""
    out = dict(params)
    scale = normalization.scale
    means = params["means"].double().clone()
    means[:, :3] = means[:, :3] / scale + torch.from_numpy(normalization.center)
    out["means"] = means.float()
    if is_dynamic(params):
        from splat.renderer.slicing import scale_space_4d

        out["scales"], out["quats"], out["quats_right"] = scale_space_4d(
            params["scales"], params["quats"], params["quats_right"], 1.0 / scale
        )
    else:
        out["scales"] = params["scales"] - math.log(scale)
    return out
