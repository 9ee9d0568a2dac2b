"""`rasterize`: the one functional entry of the renderer, a drop-in for gsplat's `rasterization()`.

Pipeline (each stage a Warp kernel pair with a pure-torch twin in `torch_impl`):
projection -> (spherical harmonics) -> tile binning -> per-tile compositing.
"""

from __future__ import annotations

import torch

from .binning import isect_offset_encode, isect_tiles, tile_grid
from .compositing import rasterize_to_pixels
from .projection import fully_fused_projection
from .spherical_harmonics import sh_colors
from .validation import CameraModel, RasterizeMode, RenderMode, checks_rasterize_inputs

_TRIU = ([0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2])


def _f32(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.float().contiguous()


def camera_centers(viewmats: torch.Tensor) -> torch.Tensor:
    """World-space camera centres (C, 3) of world-to-camera matrices: -R^T t."""
    R = viewmats[:, :3, :3]
    t = viewmats[:, :3, 3:]
    return -(R.transpose(1, 2) @ t)[..., 0]


@checks_rasterize_inputs
def rasterize(
    means: torch.Tensor,
    quats: torch.Tensor | None,
    scales: torch.Tensor | None,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    sh_degree: int | None = None,
    backgrounds: torch.Tensor | None = None,
    render_mode: RenderMode = "RGB",
    rasterize_mode: RasterizeMode = "classic",
    camera_model: CameraModel = "pinhole",
    tile_size: int = 16,
    covars: torch.Tensor | None = None,
    absgrad: bool = False,
    radius_clip: float = 0.0,
    packed: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Render N 3D Gaussians into C cameras. Same arguments and outputs as gsplat's `rasterization()`.

    Args:
        means: (N, 3) centres in world space.
        quats: (N, 4) rotations, wxyz, need not be normalised. Ignored when `covars` is given.
        scales: (N, 3) activated (positive) scales. Ignored when `covars` is given.
        opacities: (N,) activated opacities in [0, 1].
        colors: post-activation features (N, D) or (C, N, D), any D; or, with `sh_degree`, SH
            coefficients (N, K, 3) or (C, N, K, 3), K >= (sh_degree + 1)^2, turned into colour per
            camera as max(SH(view dir) + 0.5, 0); or a pair (DC band (N, 1, 3), higher bands
            (N, K - 1, 3)), as a model keeps them, so they need not be concatenated.
        viewmats: (C, 4, 4) world-to-camera matrices, OpenCV axes (x right, y down, z forward).
        Ks: (C, 3, 3) pinhole intrinsics in pixels (pixel centres at integer + 0.5).
        width, height: image size in pixels.
        near_plane, far_plane: Gaussians with camera z outside (near, far) are culled.
        eps2d: low-pass filter added to every 2D covariance (pixels^2).
        sh_degree: None for plain features, else 0..3.
        backgrounds: (C, D) colour behind the splats, composited with the final transmittance.
        render_mode: "RGB" (features), "D" (accumulated z), "ED" (expected z = D / alpha),
            "RGB+D", "RGB+ED" (depth as the last channel).
        rasterize_mode: "classic" or "antialiased" (Mip-Splatting opacity compensation).
        camera_model: "pinhole" or "ortho" (means2d = (fx x + cx, fy y + cy)).
        tile_size: tile edge in pixels (1..32).
        covars: (N, 3, 3) world covariances used in place of quats and scales.
        absgrad: also accumulate |gradient| of means2d per pixel into `meta["means2d"].absgrad`.
        radius_clip: cull Gaussians whose pixel radius is at most this.
        packed: only False (per-camera (C, N) layouts) is supported.

    Returns:
        render_colors (C, H, W, X), render_alphas (C, H, W, 1) and a meta dict with the
        intermediate tensors: "means2d" (C, N, 2; call `.retain_grad()` before backward to read
        its gradient, as densification does), "radii" (C, N, 2) int32, "depths", "conics",
        "opacities", "tiles_per_gauss", "isect_ids", "flatten_ids", "isect_offsets", "width",
        "height", "tile_size", "tile_width", "tile_height", "n_cameras", "camera_ids" and
        "gaussian_ids" (None: unpacked layout).

    Differentiable w.r.t. means, quats, scales, covars, opacities, colors and backgrounds
    (not viewmats or Ks).
    """
    if packed:
        raise ValueError("packed: only packed=False is supported (per-camera (C, N) layouts)")
    means, opacities, viewmats, Ks = _f32(means), _f32(opacities), _f32(viewmats), _f32(Ks)
    backgrounds = _f32(backgrounds)
    if covars is not None:
        covars6 = _f32(covars[:, _TRIU[0], _TRIU[1]])
        quats = scales = None
    else:
        covars6 = None
        quats, scales = _f32(quats), _f32(scales)

    projected = project(
        means,
        quats,
        scales,
        covars6,
        opacities,
        colors,
        viewmats,
        Ks,
        width,
        height,
        near_plane,
        far_plane,
        eps2d,
        sh_degree,
        render_mode,
        rasterize_mode,
        camera_model,
        radius_clip,
    )
    return composite(projected, width, height, render_mode, backgrounds, tile_size, absgrad)


def project(
    means,
    quats,
    scales,
    covars6,
    opacities,
    colors,
    viewmats,
    Ks,
    width,
    height,
    near_plane,
    far_plane,
    eps2d,
    sh_degree,
    render_mode,
    rasterize_mode,
    camera_model,
    radius_clip,
) -> dict:
    """Stage 1 of `rasterize` (checked float32 inputs): project N Gaussians into C cameras.

    Returns the per-(camera, Gaussian) screen-space attributes, all (C, N, ...): "radii" (int32,
    not differentiable), "means2d", "depths", "conics", "opacities", "features" ((C, N, D), or
    (N, D) for plain features shared by all cameras, or None for depth only).
    `renderer.distributed` exchanges them between ranks before `composite`."""
    N, C = means.shape[0], viewmats.shape[0]
    antialiased = rasterize_mode == "antialiased"
    radii, means2d, depths, conics, compensations = fully_fused_projection(
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
    opacities_cn = opacities[None, :].expand(C, N)
    opacities_cn = (opacities_cn * compensations) if antialiased else opacities_cn.contiguous()

    if render_mode in ("D", "ED"):
        features = None  # depth only: colours are not evaluated
    elif sh_degree is not None:
        dc, rest = colors if isinstance(colors, (tuple, list)) else (colors, None)
        features = sh_colors(sh_degree, means, camera_centers(viewmats), _f32(dc), radii, _f32(rest))
    else:
        features = _f32(colors)
    return {
        "radii": radii,
        "means2d": means2d,
        "depths": depths,
        "conics": conics,
        "opacities": opacities_cn,
        "features": features,
    }


def composite(projected: dict, width: int, height: int, render_mode: str, backgrounds, tile_size: int, absgrad: bool):
    """Stages 2 and 3 of `rasterize`: bin the projected Gaussians (C, N, ...) into tiles and
    composite the C images; returns (render_colors, render_alphas, meta) as `rasterize` does."""
    radii, means2d, depths, conics = projected["radii"], projected["means2d"], projected["depths"], projected["conics"]
    opacities_cn, features = projected["opacities"], projected["features"]
    C = means2d.shape[0]
    if render_mode in ("RGB+D", "RGB+ED"):
        if features.dim() == 2:
            features = features[None].expand(C, features.shape[0], features.shape[-1])
        features = torch.cat([features, depths[..., None]], dim=-1)
        if backgrounds is not None:
            backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(C, 1)], dim=-1)
    elif render_mode in ("D", "ED"):
        features = depths[..., None]
        if backgrounds is not None:
            backgrounds = backgrounds.new_zeros(C, 1)

    tile_width, tile_height = tile_grid(width, height, tile_size)
    tiles_per_gauss, isect_ids, flatten_ids = isect_tiles(means2d, radii, depths, tile_size, tile_width, tile_height)
    isect_offsets = isect_offset_encode(isect_ids, C, tile_width, tile_height)

    render_colors, render_alphas = rasterize_to_pixels(
        means2d,
        conics,
        features.contiguous(),
        opacities_cn,
        width,
        height,
        tile_size,
        isect_offsets,
        flatten_ids,
        backgrounds=backgrounds,
        absgrad=absgrad,
    )
    if render_mode in ("ED", "RGB+ED"):
        expected = render_colors[..., -1:] / render_alphas.clamp(min=1e-10)
        render_colors = torch.cat([render_colors[..., :-1], expected], dim=-1)

    meta = {
        "camera_ids": None,
        "gaussian_ids": None,
        "radii": radii,
        "means2d": means2d,
        "depths": depths,
        "conics": conics,
        "opacities": opacities_cn,
        "tile_width": tile_width,
        "tile_height": tile_height,
        "tiles_per_gauss": tiles_per_gauss,
        "isect_ids": isect_ids,
        "flatten_ids": flatten_ids,
        "isect_offsets": isect_offsets,
        "width": width,
        "height": height,
        "tile_size": tile_size,
        "n_cameras": C,
    }
    return render_colors, render_alphas, meta
