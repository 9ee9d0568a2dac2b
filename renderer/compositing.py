"""Per-tile front-to-back alpha compositing of projected Gaussians, as a Warp kernel pair.

One thread per pixel; threads are numbered tile by tile so the 256 pixels of a tile run together
(one CUDA block, or consecutive iterations on a CPU core: the tile's Gaussians stay in cache).
Rules, as gsplat / INRIA 3DGS: pixel centres at +0.5; alpha = min(0.99, opacity * exp(-power));
skip alpha < 1/255; stop before transmittance would fall to 1e-4 (that splat is not blended).

The backward pass walks each pixel's list back to front, recovering transmittance by division,
and accumulates per-Gaussian gradients. Kernels are generated per channel count D (any D).
"""

from __future__ import annotations

import torch
import warp as wp

from . import _warp
from .compositing_cpu import tile_kernels
from .gaussian_math import ALPHA_MAX, TRANSMITTANCE_MIN, splat2d, splat_alpha, splat_alpha_vjp

wp.set_module_options(_warp.KERNEL_OPTIONS)

MAX_CHANNELS_PER_PASS = 32  # wider features are rasterised in chunks of this many channels

# Which kernels composite on each device type: "pixel" (one thread per pixel, the CUDA kernels) or
# "tile" (one thread per tile, splats outer / pixels inner: compositing_cpu.py). Tests switch it.
KERNEL_VARIANT = {"cpu": "tile", "cuda": "pixel"}
TILE_GRAIN = 4  # tiles per CPU task: each tile is a lot of work


@wp.func
def pixel_of_thread(i: int, tile_size: int, tile_width: int, tile_height: int, width: int):
    """Thread index -> (camera, tile index within the camera, pixel x, pixel y)."""
    tile_pixels = tile_size * tile_size
    tiles = tile_width * tile_height
    cam_pixels = tiles * tile_pixels
    cam = i // cam_pixels
    rem = i - cam * cam_pixels
    tile = rem // tile_pixels
    local = rem - tile * tile_pixels
    ty = tile // tile_width
    tx = tile - ty * tile_width
    ly = local // tile_size
    return cam, tile, tx * tile_size + (local - ly * tile_size), ty * tile_size + ly


@wp.func
def tile_range_end(isect_offsets: wp.array(dtype=wp.int32), global_tile: int, num_tiles_total: int, num_isects: int) -> int:
    if global_tile + 1 < num_tiles_total:
        return isect_offsets[global_tile + 1]
    return num_isects


def pack_splats(means2d: torch.Tensor, conics: torch.Tensor, opacities: torch.Tensor) -> torch.Tensor:
    """(C, N, 8) records for `splat_alpha` (not differentiable; gradients go to the inputs)."""
    with torch.no_grad():
        op = opacities[..., None]
        limit = torch.log(op * 255.0)
        return torch.cat([means2d, conics, op, limit, torch.zeros_like(op)], dim=-1).contiguous()


_kernel_cache: dict[int, tuple] = {}


def _kernels(D: int):
    """Forward/backward compositing kernels for D channels (compiled once per D, then cached)."""
    if D in _kernel_cache:
        return _kernel_cache[D]
    vecD = wp.types.vector(length=D, dtype=wp.float32)

    @wp.kernel(module="unique", enable_backward=False)
    def composite_fwd(
        offset: int,
        splats: wp.array(dtype=splat2d),
        colors: wp.array(dtype=vecD),
        colors_per_camera: int,
        backgrounds: wp.array(dtype=vecD),
        has_background: int,
        isect_offsets: wp.array(dtype=wp.int32),
        flatten_ids: wp.array(dtype=wp.int32),
        num_isects: int,
        num_gaussians: int,
        num_cameras: int,
        width: int,
        height: int,
        tile_size: int,
        tile_width: int,
        tile_height: int,
        out_colors: wp.array(dtype=vecD),
        out_alphas: wp.array(dtype=float),
        out_transmittance: wp.array(dtype=float),
        last_ids: wp.array(dtype=wp.int32),
    ):
        i = wp.tid() + offset
        cam, tile, x, y = pixel_of_thread(i, tile_size, tile_width, tile_height, width)
        if x >= width or y >= height:
            return
        pix = (cam * height + y) * width + x
        px = float(x) + 0.5
        py = float(y) + 0.5
        global_tile = cam * tile_width * tile_height + tile
        start = isect_offsets[global_tile]
        end = tile_range_end(isect_offsets, global_tile, num_cameras * tile_width * tile_height, num_isects)

        T = float(1.0)
        acc = vecD()
        last = int(-1)
        for j in range(start, end):
            g = flatten_ids[j]
            raw_alpha, dx, dy = splat_alpha(splats[g], px, py)
            if raw_alpha == 0.0:
                continue
            alpha = wp.min(ALPHA_MAX, raw_alpha)
            next_T = T * (1.0 - alpha)
            if next_T <= TRANSMITTANCE_MIN:
                break
            row = g - (g // num_gaussians) * num_gaussians
            if colors_per_camera != 0:
                row = g
            acc += colors[row] * (alpha * T)
            last = j
            T = next_T
        if has_background != 0:
            acc += backgrounds[cam] * T
        out_colors[pix] = acc
        out_alphas[pix] = 1.0 - T
        out_transmittance[pix] = T
        last_ids[pix] = last

    @wp.kernel(module="unique", enable_backward=False)
    def composite_bwd(
        offset: int,
        shard: int,
        splats: wp.array(dtype=splat2d),
        colors: wp.array(dtype=vecD),
        colors_per_camera: int,
        backgrounds: wp.array(dtype=vecD),
        has_background: int,
        isect_offsets: wp.array(dtype=wp.int32),
        flatten_ids: wp.array(dtype=wp.int32),
        num_gaussians: int,
        width: int,
        height: int,
        tile_size: int,
        tile_width: int,
        tile_height: int,
        out_transmittance: wp.array(dtype=float),
        last_ids: wp.array(dtype=wp.int32),
        v_out_colors: wp.array(dtype=vecD),
        v_out_alphas: wp.array(dtype=float),
        # outputs: one slice per shard (CPU worker), summed by the caller
        v_means2d: wp.array2d(dtype=wp.vec2),
        v_conics: wp.array2d(dtype=wp.vec3),
        v_opacities: wp.array2d(dtype=float),
        v_colors: wp.array2d(dtype=vecD),
        absgrad: int,
        v_means2d_abs: wp.array2d(dtype=wp.vec2),
    ):
        i = wp.tid() + offset
        cam, tile, x, y = pixel_of_thread(i, tile_size, tile_width, tile_height, width)
        if x >= width or y >= height:
            return
        pix = (cam * height + y) * width + x
        last = last_ids[pix]
        global_tile = cam * tile_width * tile_height + tile
        start = isect_offsets[global_tile]
        if last < start:
            return
        px = float(x) + 0.5
        py = float(y) + 0.5
        T_final = out_transmittance[pix]
        T = T_final
        v_out = v_out_colors[pix]
        v_out_alpha = v_out_alphas[pix]
        v_bg_term = float(0.0)
        if has_background != 0:
            v_bg_term = wp.dot(backgrounds[cam], v_out)
        behind = vecD()  # sum of colour * weight of the splats behind the current one
        j = last
        while j >= start:
            g = flatten_ids[j]
            s = splats[g]
            raw_alpha, dx, dy = splat_alpha(s, px, py)
            if raw_alpha > 0.0:
                alpha = wp.min(ALPHA_MAX, raw_alpha)
                row = g - (g // num_gaussians) * num_gaussians
                if colors_per_camera != 0:
                    row = g
                one_minus_inv = 1.0 / (1.0 - alpha)
                T = T * one_minus_inv
                weight = alpha * T
                color = colors[row]
                v_colors[shard, row] = v_colors[shard, row] + v_out * weight
                v_alpha = wp.dot(color * T - behind * one_minus_inv, v_out)
                v_alpha += T_final * one_minus_inv * (v_out_alpha - v_bg_term)
                v_mean, v_conic, v_opacity = splat_alpha_vjp(s, raw_alpha, dx, dy, v_alpha)
                v_conics[shard, g] = v_conics[shard, g] + v_conic
                v_means2d[shard, g] = v_means2d[shard, g] + v_mean
                v_opacities[shard, g] = v_opacities[shard, g] + v_opacity
                if absgrad != 0:
                    v_means2d_abs[shard, g] = v_means2d_abs[shard, g] + wp.vec2(wp.abs(v_mean[0]), wp.abs(v_mean[1]))
                behind += color * weight
            j -= 1

    _kernel_cache[D] = (vecD, composite_fwd, composite_bwd)
    return _kernel_cache[D]


def _use_tile_kernels(device: torch.device) -> bool:
    return KERNEL_VARIANT.get(device.type, "pixel") == "tile"


def _channel_view(t: torch.Tensor, D: int) -> torch.Tensor:
    return t.reshape(-1, D)


class _RasterizeToPixels(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, backgrounds, width, height, tile_size, isect_offsets, flatten_ids, absgrad):
        C, N = means2d.shape[:2]
        D = colors.shape[-1]
        dev = means2d.device
        vecD, fwd, _ = _kernels(D)
        tile_height, tile_width = isect_offsets.shape[1:]
        out_colors = torch.empty((C, height, width, D), dtype=torch.float32, device=dev)
        out_alphas = torch.empty((C, height, width, 1), dtype=torch.float32, device=dev)
        out_T = torch.empty((C, height, width), dtype=torch.float32, device=dev)
        last_ids = torch.empty((C, height, width), dtype=torch.int32, device=dev)
        bg = backgrounds if backgrounds is not None else torch.zeros((1, D), dtype=torch.float32, device=dev)
        splats = pack_splats(means2d, conics, opacities)
        A = _warp.array
        per_tile = _use_tile_kernels(dev)
        kernel = tile_kernels(D)[1] if per_tile else fwd
        _warp.launch(
            kernel,
            C * tile_width * tile_height * (1 if per_tile else tile_size * tile_size),
            [A(splats, splat2d), A(_channel_view(colors, D), vecD), int(colors.dim() == 3), A(bg, vecD),
             int(backgrounds is not None), A(isect_offsets.view(-1)), A(flatten_ids), flatten_ids.shape[0], N, C,
             width, height, tile_size, tile_width, tile_height, A(out_colors.view(-1, D), vecD),
             A(out_alphas.view(-1)), A(out_T.view(-1)), A(last_ids.view(-1))],
            dev,
            grain=TILE_GRAIN if per_tile else _warp.DEFAULT_GRAIN,
        )  # fmt: skip
        ctx.save_for_backward(means2d, splats, colors, backgrounds, isect_offsets, flatten_ids, out_T, last_ids)
        ctx.config = (width, height, tile_size, absgrad)
        return out_colors, out_alphas

    @staticmethod
    def backward(ctx, v_out_colors, v_out_alphas):
        means2d, splats, colors, backgrounds, isect_offsets, flatten_ids, out_T, last_ids = ctx.saved_tensors
        width, height, tile_size, absgrad = ctx.config
        C, N = means2d.shape[:2]
        D = colors.shape[-1]
        dev = means2d.device
        vecD, _, bwd = _kernels(D)
        tile_height, tile_width = isect_offsets.shape[1:]
        if v_out_colors is None:
            v_out_colors = torch.zeros((C, height, width, D), dtype=torch.float32, device=dev)
        if v_out_alphas is None:
            v_out_alphas = torch.zeros((C, height, width, 1), dtype=torch.float32, device=dev)
        v_out_colors = v_out_colors.contiguous().float()
        v_out_alphas = v_out_alphas.contiguous().float()

        S = _warp.num_shards(dev)
        rows = colors.shape[0] * colors.shape[1] if colors.dim() == 3 else colors.shape[0]
        v_means2d = torch.zeros((S, C * N, 2), dtype=torch.float32, device=dev)
        v_conics = torch.zeros((S, C * N, 3), dtype=torch.float32, device=dev)
        v_opacities = torch.zeros((S, C * N), dtype=torch.float32, device=dev)
        v_colors = torch.zeros((S, rows, D), dtype=torch.float32, device=dev)
        v_abs = torch.zeros((S if absgrad else 1, C * N if absgrad else 1, 2), dtype=torch.float32, device=dev)
        bg = backgrounds if backgrounds is not None else torch.zeros((1, D), dtype=torch.float32, device=dev)
        A = _warp.array
        head = [A(splats, splat2d), A(_channel_view(colors, D), vecD), int(colors.dim() == 3), A(bg, vecD),
                int(backgrounds is not None), A(isect_offsets.view(-1)), A(flatten_ids), N, width, height, tile_size,
                tile_width, tile_height, A(out_T.view(-1)), A(last_ids.view(-1)), A(v_out_colors.view(-1, D), vecD),
                A(v_out_alphas.view(-1))]  # fmt: skip
        tail = [A(v_means2d, wp.vec2, 2), A(v_conics, wp.vec3, 2), A(v_opacities, None, 2), A(v_colors, vecD, 2),
                int(absgrad), A(v_abs, wp.vec2, 2)]  # fmt: skip
        if _use_tile_kernels(dev):
            scratch_T = torch.empty((C * height * width,), dtype=torch.float32, device=dev)
            scratch_behind = torch.empty((C * height * width, D), dtype=torch.float32, device=dev)
            scratch = [A(scratch_T), A(scratch_behind, vecD)]
            _warp.launch(tile_kernels(D)[2], C * tile_width * tile_height, head + scratch + tail, dev, sharded=True,
                         grain=TILE_GRAIN)  # fmt: skip
        else:
            _warp.launch(bwd, C * tile_width * tile_height * tile_size * tile_size, head + tail, dev, sharded=True)
        v_means2d = v_means2d.sum(0).view(C, N, 2)
        if absgrad:
            means2d.absgrad = v_abs.sum(0).view(C, N, 2)
        v_backgrounds = None
        if backgrounds is not None and ctx.needs_input_grad[4]:
            v_backgrounds = (v_out_colors * out_T[..., None]).sum(dim=(1, 2))
        return (
            v_means2d,
            v_conics.sum(0).view(C, N, 3),
            v_colors.sum(0).view(colors.shape),
            v_opacities.sum(0).view(C, N),
            v_backgrounds,
            None, None, None, None, None, None,
        )  # fmt: skip


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
):
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
    if D <= MAX_CHANNELS_PER_PASS:
        return _RasterizeToPixels.apply(
            means2d, conics, colors, opacities, backgrounds, width, height, tile_size, isect_offsets, flatten_ids, absgrad
        )
    # Wide features: chunks of channels; alphas (and absgrad) come from the first chunk only.
    chunks = []
    alphas = None
    for k, start in enumerate(range(0, D, MAX_CHANNELS_PER_PASS)):
        sl = slice(start, min(D, start + MAX_CHANNELS_PER_PASS))
        bg = backgrounds[:, sl].contiguous() if backgrounds is not None else None
        out, a = _RasterizeToPixels.apply(
            means2d, conics, colors[..., sl].contiguous(), opacities, bg, width, height, tile_size, isect_offsets,
            flatten_ids, absgrad and k == 0,
        )  # fmt: skip
        chunks.append(out)
        alphas = a if alphas is None else alphas
    return torch.cat(chunks, dim=-1), alphas
