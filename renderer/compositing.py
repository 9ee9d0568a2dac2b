"""Per-tile front-to-back alpha compositing of projected Gaussians: the autograd function.

Two kernel sets implement it with the same per-pair arithmetic: per-pixel kernels
(`compositing_pixel.py`, the CUDA path) and per-tile kernels (`compositing_tile.py`, the CPU
default). Features wider than 32 channels (8 for the tile kernels) run in chunks of that many.
"""

from __future__ import annotations

import torch
import warp as wp

from . import warp_runtime
from .compositing_pixel import TileGrid, composite_types, pixel_kernels
from .compositing_tile import MAX_TILE_CHANNELS, lanes_for, tile_kernels
from .gaussian_math import splat2d

MAX_CHANNELS_PER_PASS = 32

# Which kernels composite on each device type: "pixel" (one thread per pixel) or "tile" (one
# thread per tile, splats outer / pixels inner). Tests switch the CPU entry to run both.
KERNEL_VARIANT = {"cpu": "tile", "cuda": "pixel"}
TILE_GRAIN = 4  # tiles per CPU task: each tile is a lot of work


def pack_splats(means2d: torch.Tensor, conics: torch.Tensor, opacities: torch.Tensor) -> torch.Tensor:
    """(C, N, 8) records for `splat_alpha` (not differentiable; gradients go to the inputs)."""
    with torch.no_grad():
        op = opacities[..., None]
        limit = torch.log(op * 255.0)
        return torch.cat([means2d, conics, op, limit, torch.zeros_like(op)], dim=-1).contiguous()


def _tile_grid(C, N, width, height, tile_size, isect_offsets, flatten_ids) -> TileGrid:
    grid = TileGrid()
    grid.num_cameras, grid.num_gaussians, grid.width, grid.height = C, N, width, height
    grid.tile_size = tile_size
    grid.tile_height, grid.tile_width = isect_offsets.shape[1:]
    grid.isect_offsets = warp_runtime.array(isect_offsets.view(-1))
    grid.flatten_ids = warp_runtime.array(flatten_ids)
    return grid


def _splats_struct(D, splats, colors, backgrounds):
    vecD, Splats, _, _ = composite_types(D)
    s = Splats()
    s.records = warp_runtime.array(splats, splat2d)
    s.colors = warp_runtime.array(colors.reshape(-1, D), vecD)
    s.colors_per_camera = int(colors.dim() == 3)
    bg = backgrounds if backgrounds is not None else colors.new_zeros((1, D))
    s.backgrounds = warp_runtime.array(bg, vecD)
    s.has_background = int(backgrounds is not None)
    return s


def _image_struct(D, colors, alphas, transmittance, last_ids):
    vecD, _, Image, _ = composite_types(D)
    im = Image()
    im.colors = warp_runtime.array(colors, vecD)
    im.alphas = warp_runtime.array(alphas)
    im.transmittance = warp_runtime.array(transmittance)
    im.last_ids = warp_runtime.array(last_ids)
    return im


def _uses_tile_kernels(device: torch.device) -> bool:
    return KERNEL_VARIANT.get(device.type, "pixel") == "tile"


def _launch(
    forward: bool, D: int, device: torch.device, num_tiles: int, tile_size: int, inputs: list, outputs: list
) -> None:
    if _uses_tile_kernels(device):
        kernel = tile_kernels(D, lanes_for(tile_size))[0 if forward else 1]
        warp_runtime.launch(kernel, num_tiles, inputs, outputs, device=device, sharded=not forward, grain=TILE_GRAIN)
    else:
        kernel = pixel_kernels(D)[0 if forward else 1]
        warp_runtime.launch(
            kernel, num_tiles * tile_size * tile_size, inputs, outputs, device=device, sharded=not forward
        )


class _RasterizeToPixels(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        means2d,
        conics,
        colors,
        opacities,
        backgrounds,
        width,
        height,
        tile_size,
        isect_offsets,
        flatten_ids,
        absgrad,
    ):
        C, N = means2d.shape[:2]
        D = colors.shape[-1]
        dev = means2d.device
        out_colors = torch.empty((C, height, width, D), dtype=torch.float32, device=dev)
        out_alphas = torch.empty((C, height, width, 1), dtype=torch.float32, device=dev)
        out_T = torch.empty((C, height, width), dtype=torch.float32, device=dev)
        last_ids = torch.empty((C, height, width), dtype=torch.int32, device=dev)
        splats = pack_splats(means2d, conics, opacities)
        grid = _tile_grid(C, N, width, height, tile_size, isect_offsets, flatten_ids)
        inputs = [grid, _splats_struct(D, splats, colors, backgrounds)]
        outputs = [_image_struct(D, out_colors, out_alphas, out_T, last_ids)]
        _launch(True, D, dev, isect_offsets.numel(), tile_size, inputs, outputs)
        ctx.save_for_backward(
            means2d, splats, colors, backgrounds, isect_offsets, flatten_ids, out_colors, out_alphas, out_T, last_ids
        )
        ctx.config = (width, height, tile_size, absgrad)
        return out_colors, out_alphas

    @staticmethod
    def backward(ctx, v_out_colors, v_out_alphas):
        means2d, splats, colors, backgrounds, isect_offsets, flatten_ids, out_colors, out_alphas, out_T, last_ids = (
            ctx.saved_tensors
        )
        width, height, tile_size, absgrad = ctx.config
        C, N = means2d.shape[:2]
        D = colors.shape[-1]
        dev = means2d.device
        vecD, _, _, Grads = composite_types(D)
        if v_out_colors is None:
            v_out_colors = torch.zeros_like(out_colors)
        if v_out_alphas is None:
            v_out_alphas = torch.zeros_like(out_alphas)
        v_out_colors = v_out_colors.contiguous().float()
        v_out_alphas = v_out_alphas.contiguous().float()

        S = warp_runtime.num_shards(dev)
        rows = colors.shape[0] * colors.shape[1] if colors.dim() == 3 else colors.shape[0]
        v_means2d = torch.zeros((S, C * N, 2), dtype=torch.float32, device=dev)
        v_conics = torch.zeros((S, C * N, 3), dtype=torch.float32, device=dev)
        v_opacities = torch.zeros((S, C * N), dtype=torch.float32, device=dev)
        v_colors = torch.zeros((S, rows, D), dtype=torch.float32, device=dev)
        v_abs = torch.zeros((S, C * N, 2) if absgrad else (1, 1, 2), dtype=torch.float32, device=dev)
        A = warp_runtime.array
        grads = Grads()
        grads.means2d, grads.conics = A(v_means2d, wp.vec2, 2), A(v_conics, wp.vec3, 2)
        grads.opacities, grads.colors = A(v_opacities, None, 2), A(v_colors, vecD, 2)
        grads.absgrad, grads.means2d_abs = int(absgrad), A(v_abs, wp.vec2, 2)
        inputs = [
            _tile_grid(C, N, width, height, tile_size, isect_offsets, flatten_ids),
            _splats_struct(D, splats, colors, backgrounds),
            _image_struct(D, out_colors, out_alphas, out_T, last_ids),
            A(v_out_colors, vecD),
            A(v_out_alphas),
        ]
        _launch(False, D, dev, isect_offsets.numel(), tile_size, inputs, [grads])
        if absgrad:
            means2d.absgrad = v_abs.sum(0).view(C, N, 2)
        v_backgrounds = None
        if backgrounds is not None and ctx.needs_input_grad[4]:
            v_backgrounds = (v_out_colors * out_T[..., None]).sum(dim=(1, 2))
        return (
            v_means2d.sum(0).view(C, N, 2),
            v_conics.sum(0).view(C, N, 3),
            v_colors.sum(0).view(colors.shape),
            v_opacities.sum(0).view(C, N),
            v_backgrounds,
            None,
            None,
            None,
            None,
            None,
            None,
        )


def rasterize_to_pixels(
    means2d: torch.Tensor,
    conics: torch.Tensor,
    colors: torch.Tensor,
    opacities: torch.Tensor,
    width: int,
    height: int,
    tile_size: int,
    isect_offsets: torch.Tensor,
    flatten_ids: torch.Tensor,
    backgrounds: torch.Tensor | None = None,
    absgrad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite projected Gaussians into images.

    Args:
        means2d (C, N, 2), conics (C, N, 3), opacities (C, N); colors (C, N, D) or (N, D) shared
        by all cameras; backgrounds (C, D) or None; isect_offsets (C, tile_h, tile_w) and
        flatten_ids from `isect_tiles` / `isect_offset_encode`.

    Returns:
        render_colors (C, H, W, D) and render_alphas (C, H, W, 1). Differentiable w.r.t. means2d,
        conics, colors, opacities and backgrounds. With absgrad, `means2d.absgrad` holds the sum
        over pixels of |d loss / d means2d| after backward (as gsplat).
    """
    D = colors.shape[-1]
    per_pass = MAX_TILE_CHANNELS if _uses_tile_kernels(colors.device) else MAX_CHANNELS_PER_PASS
    if D <= per_pass:
        return _RasterizeToPixels.apply(
            means2d,
            conics,
            colors,
            opacities,
            backgrounds,
            width,
            height,
            tile_size,
            isect_offsets,
            flatten_ids,
            absgrad,
        )
    # Wide features: chunks of channels; alphas (and absgrad) come from the first chunk only.
    chunks = []
    alphas = None
    for k, start in enumerate(range(0, D, per_pass)):
        sl = slice(start, min(D, start + per_pass))
        bg = backgrounds[:, sl].contiguous() if backgrounds is not None else None
        out, a = _RasterizeToPixels.apply(
            means2d,
            conics,
            colors[..., sl].contiguous(),
            opacities,
            bg,
            width,
            height,
            tile_size,
            isect_offsets,
            flatten_ids,
            absgrad and k == 0,
        )
        chunks.append(out)
        alphas = a if alphas is None else alphas
    return torch.cat(chunks, dim=-1), alphas
