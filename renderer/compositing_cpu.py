"""CPU variant of the compositing kernels: one thread per tile, splats outer, pixels inner.

A CPU core gains nothing from 256 threads walking the same list; instead each tile walks its
depth-sorted list once and, for every splat, visits only the pixels of the tile inside the splat's
ellipse `power <= log(255 * opacity)` (solved row by row, widened by a pixel each side), where the
per-pixel kernels test every pixel of the tile against every splat. Per-pixel state (colour,
transmittance, stop flag) lives in the output buffers, which stay in cache while a tile is worked.

Pair by pair, the decisions and arithmetic are those of `compositing.py` (`splat_alpha`,
`splat_alpha_vjp`), so both variants render the same image; tests run both.
"""

from __future__ import annotations

import warp as wp

from . import _warp
from .gaussian_math import ALPHA_MAX, TRANSMITTANCE_MIN, splat2d, splat_alpha, splat_alpha_vjp

wp.set_module_options(_warp.KERNEL_OPTIONS)


@wp.func
def ellipse_rows(s: splat2d, y0: int, y1: int) -> wp.vec2i:
    """Pixel rows [first, last] of [y0, y1) whose centres can lie inside the splat's ellipse."""
    a = s[2]
    b = s[3]
    c = s[4]
    det = a * c - b * b
    if not (s[6] >= 0.0 and det > 0.0 and a > 0.0):
        return wp.vec2i(1, 0)
    half = wp.sqrt(2.0 * a * s[6] / det)
    first = wp.max(y0, int(wp.floor(s[1] - half - 0.5)))
    last = wp.min(y1 - 1, int(wp.ceil(s[1] + half - 0.5)))
    return wp.vec2i(first, last)


@wp.func
def ellipse_span(s: splat2d, y: int, x0: int, x1: int) -> wp.vec2i:
    """Pixel columns [first, last] of row y within [x0, x1) whose centres can lie inside the ellipse
    (roots of power(dx) = log(255 opacity), widened by one pixel against rounding)."""
    a = s[2]
    b = s[3]
    dy = s[1] - (float(y) + 0.5)
    disc = b * b * dy * dy - a * (s[4] * dy * dy - 2.0 * s[6])
    if disc < 0.0:
        return wp.vec2i(1, 0)
    r = wp.sqrt(disc)
    dx_lo = (-b * dy - r) / a
    dx_hi = (-b * dy + r) / a
    first = wp.max(x0, int(wp.floor(s[0] - dx_hi - 0.5)))
    last = wp.min(x1 - 1, int(wp.ceil(s[0] - dx_lo - 0.5)))
    return wp.vec2i(first, last)


@wp.func
def tile_bounds(t: int, tile_size: int, tile_width: int, tile_height: int, width: int, height: int) -> wp.vec4i:
    """Pixel rectangle [x0, x1) x [y0, y1) of global tile t, as (x0, y0, x1, y1)."""
    tiles = tile_width * tile_height
    cam = t // tiles
    tile = t - cam * tiles
    ty = tile // tile_width
    tx = tile - ty * tile_width
    x0 = tx * tile_size
    y0 = ty * tile_size
    return wp.vec4i(x0, y0, wp.min(x0 + tile_size, width), wp.min(y0 + tile_size, height))


MAX_TILE_ROWS = 32  # = validation.MAX_TILE_SIZE
rowvec = wp.types.vector(length=MAX_TILE_ROWS, dtype=wp.int32)

_kernel_cache: dict[int, tuple] = {}


def tile_kernels(D: int):
    """Forward/backward per-tile compositing kernels for D channels (compiled once per D)."""
    if D in _kernel_cache:
        return _kernel_cache[D]
    vecD = wp.types.vector(length=D, dtype=wp.float32)

    @wp.kernel(module="unique", enable_backward=False)
    def composite_tiles_fwd(
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
        t = wp.tid() + offset
        cam = t // (tile_width * tile_height)
        box = tile_bounds(t, tile_size, tile_width, tile_height, width, height)
        live_in_row = rowvec()  # pixels of each tile row still compositing: skip finished rows
        for y in range(box[1], box[3]):
            live_in_row[y - box[1]] = box[2] - box[0]
            for x in range(box[0], box[2]):
                pix = (cam * height + y) * width + x
                out_colors[pix] = vecD()
                out_transmittance[pix] = 1.0
                last_ids[pix] = -1
                out_alphas[pix] = 0.0  # doubles as the "stopped" flag until the end
        pixels_left = (box[2] - box[0]) * (box[3] - box[1])
        start = isect_offsets[t]
        end = num_isects
        if t + 1 < num_cameras * tile_width * tile_height:
            end = isect_offsets[t + 1]
        j = start
        while j < end and pixels_left > 0:
            g = flatten_ids[j]
            s = splats[g]
            rows = ellipse_rows(s, box[1], box[3])
            if rows[0] <= rows[1]:
                row = g - (g // num_gaussians) * num_gaussians
                if colors_per_camera != 0:
                    row = g
                color = colors[row]
                for y in range(rows[0], rows[1] + 1):
                    if live_in_row[y - box[1]] == 0:
                        continue
                    span = ellipse_span(s, y, box[0], box[2])
                    for x in range(span[0], span[1] + 1):
                        pix = (cam * height + y) * width + x
                        if out_alphas[pix] != 0.0:
                            continue
                        raw_alpha, dx, dy = splat_alpha(s, float(x) + 0.5, float(y) + 0.5)
                        if raw_alpha == 0.0:
                            continue
                        alpha = wp.min(ALPHA_MAX, raw_alpha)
                        T = out_transmittance[pix]
                        next_T = T * (1.0 - alpha)
                        if next_T <= TRANSMITTANCE_MIN:
                            out_alphas[pix] = 1.0
                            pixels_left -= 1
                            live_in_row[y - box[1]] = live_in_row[y - box[1]] - 1
                            continue
                        out_colors[pix] = out_colors[pix] + color * (alpha * T)
                        out_transmittance[pix] = next_T
                        last_ids[pix] = j
            j += 1
        for y in range(box[1], box[3]):
            for x in range(box[0], box[2]):
                pix = (cam * height + y) * width + x
                T = out_transmittance[pix]
                if has_background != 0:
                    out_colors[pix] = out_colors[pix] + backgrounds[cam] * T
                out_alphas[pix] = 1.0 - T

    @wp.kernel(module="unique", enable_backward=False)
    def composite_tiles_bwd(
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
        # per-pixel scratch: transmittance in front of the current splat, colour behind it
        scratch_T: wp.array(dtype=float),
        scratch_behind: wp.array(dtype=vecD),
        # outputs: one slice per shard (CPU worker), summed by the caller
        v_means2d: wp.array2d(dtype=wp.vec2),
        v_conics: wp.array2d(dtype=wp.vec3),
        v_opacities: wp.array2d(dtype=float),
        v_colors: wp.array2d(dtype=vecD),
        absgrad: int,
        v_means2d_abs: wp.array2d(dtype=wp.vec2),
    ):
        t = wp.tid() + offset
        cam = t // (tile_width * tile_height)
        box = tile_bounds(t, tile_size, tile_width, tile_height, width, height)
        start = isect_offsets[t]
        last_in_tile = int(-1)
        last_in_row = rowvec()  # the deepest splat any pixel of the row blended: rows wake up below it
        for y in range(box[1], box[3]):
            deepest = int(-1)
            for x in range(box[0], box[2]):
                pix = (cam * height + y) * width + x
                scratch_T[pix] = out_transmittance[pix]
                scratch_behind[pix] = vecD()
                deepest = wp.max(deepest, last_ids[pix])
            last_in_row[y - box[1]] = deepest
            last_in_tile = wp.max(last_in_tile, deepest)
        bg = vecD()
        if has_background != 0:
            bg = backgrounds[cam]
        j = last_in_tile
        while j >= start:
            g = flatten_ids[j]
            s = splats[g]
            rows = ellipse_rows(s, box[1], box[3])
            if rows[0] <= rows[1]:
                row = g - (g // num_gaussians) * num_gaussians
                if colors_per_camera != 0:
                    row = g
                color = colors[row]
                g_mean = wp.vec2(0.0)
                g_abs = wp.vec2(0.0)
                g_conic = wp.vec3(0.0)
                g_opacity = float(0.0)
                g_color = vecD()
                for y in range(rows[0], rows[1] + 1):
                    if j > last_in_row[y - box[1]]:
                        continue
                    span = ellipse_span(s, y, box[0], box[2])
                    for x in range(span[0], span[1] + 1):
                        pix = (cam * height + y) * width + x
                        if j > last_ids[pix]:
                            continue
                        raw_alpha, dx, dy = splat_alpha(s, float(x) + 0.5, float(y) + 0.5)
                        if raw_alpha == 0.0:
                            continue
                        alpha = wp.min(ALPHA_MAX, raw_alpha)
                        one_minus_inv = 1.0 / (1.0 - alpha)
                        T = scratch_T[pix] * one_minus_inv
                        scratch_T[pix] = T
                        weight = alpha * T
                        v_out = v_out_colors[pix]
                        g_color += v_out * weight
                        behind = scratch_behind[pix]
                        T_final = out_transmittance[pix]
                        v_alpha = wp.dot(color * T - behind * one_minus_inv, v_out)
                        v_alpha += T_final * one_minus_inv * (v_out_alphas[pix] - wp.dot(bg, v_out))
                        v_mean, v_conic, v_opacity = splat_alpha_vjp(s, raw_alpha, dx, dy, v_alpha)
                        g_mean += v_mean
                        g_abs += wp.vec2(wp.abs(v_mean[0]), wp.abs(v_mean[1]))
                        g_conic += v_conic
                        g_opacity += v_opacity
                        scratch_behind[pix] = behind + color * weight
                v_colors[shard, row] = v_colors[shard, row] + g_color
                v_means2d[shard, g] = v_means2d[shard, g] + g_mean
                v_conics[shard, g] = v_conics[shard, g] + g_conic
                v_opacities[shard, g] = v_opacities[shard, g] + g_opacity
                if absgrad != 0:
                    v_means2d_abs[shard, g] = v_means2d_abs[shard, g] + g_abs
            j -= 1

    _kernel_cache[D] = (vecD, composite_tiles_fwd, composite_tiles_bwd)
    return _kernel_cache[D]
