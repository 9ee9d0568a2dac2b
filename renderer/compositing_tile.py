"""CPU variant of the compositing kernels: one thread per tile, splats outer, pixels inner.

A CPU core gains nothing from 256 threads walking the same list; instead each tile walks its
depth-sorted list once and, for every splat, visits only the pixels of the tile inside the splat's
ellipse `power <= log(255 * opacity)` (solved row by row, with a margin against rounding), where the
per-pixel kernels test every pixel of the tile against every splat. Rows whose pixels have all
stopped are skipped. Per-pixel state lives in the image buffers, which stay in cache while a tile
is worked; gradients are summed per splat before they are written.

Pair by pair, the decisions and arithmetic are those of the per-pixel kernels (`splat_alpha`,
`splat_alpha_vjp`), so both variants render the same image; the tests run both.
"""

import functools

import warp as wp

from . import warp_runtime
from .compositing_pixel import TileGrid, color_row, composite_types, pixel_index, tile_pixels, tile_range
from .gaussian_math import ALPHA_MAX, TRANSMITTANCE_MIN, splat2d, splat_alpha, splat_alpha_vjp

wp.set_module_options(warp_runtime.KERNEL_OPTIONS)

MAX_TILE_ROWS = 32  # = validation.MAX_TILE_SIZE
# Pixels whose centre lies this close outside the solved ellipse are visited too (float32 roots);
# widening by a whole pixel instead cost 18% more compositing time on trained lego.
SPAN_MARGIN = wp.constant(0.05)
rowvec = wp.types.vector(length=MAX_TILE_ROWS, dtype=wp.int32)


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
    first = wp.max(y0, int(wp.ceil(s[1] - half - 0.5 - SPAN_MARGIN)))
    last = wp.min(y1 - 1, int(wp.floor(s[1] + half - 0.5 + SPAN_MARGIN)))
    return wp.vec2i(first, last)


@wp.func
def ellipse_span(s: splat2d, y: int, x0: int, x1: int) -> wp.vec2i:
    """Pixel columns [first, last] of row y within [x0, x1) whose centres can lie inside the ellipse
    (roots of power(dx) = log(255 opacity), widened by SPAN_MARGIN)."""
    a = s[2]
    b = s[3]
    dy = s[1] - (float(y) + 0.5)
    disc = b * b * dy * dy - a * (s[4] * dy * dy - 2.0 * s[6])
    if disc < 0.0:
        return wp.vec2i(1, 0)
    r = wp.sqrt(disc)
    dx_lo = (-b * dy - r) / a
    dx_hi = (-b * dy + r) / a
    first = wp.max(x0, int(wp.ceil(s[0] - dx_hi - 0.5 - SPAN_MARGIN)))
    last = wp.min(x1 - 1, int(wp.floor(s[0] - dx_lo - 0.5 + SPAN_MARGIN)))
    return wp.vec2i(first, last)


@functools.cache
def tile_kernels(D: int):
    """(forward, backward) per-tile compositing kernels for D channels."""
    vecD, Splats, Image, Grads = composite_types(D)

    @wp.kernel(module="unique", enable_backward=False)
    def composite_tiles_fwd(offset: int, grid: TileGrid, splats: Splats, image: Image):
        t = wp.tid() + offset
        cam = t // (grid.tile_width * grid.tile_height)
        box = tile_pixels(grid, t)
        live_in_row = rowvec()  # pixels of each tile row still compositing
        for y in range(box[1], box[3]):
            live_in_row[y - box[1]] = box[2] - box[0]
            for x in range(box[0], box[2]):
                pix = pixel_index(grid, cam, x, y)
                image.colors[pix] = vecD()
                image.transmittance[pix] = 1.0
                image.last_ids[pix] = -1
                image.alphas[pix] = 0.0  # doubles as the "stopped" flag until the end
        pixels_left = (box[2] - box[0]) * (box[3] - box[1])
        span_j = tile_range(grid, t)
        j = span_j[0]
        while j < span_j[1] and pixels_left > 0:
            g = grid.flatten_ids[j]
            s = splats.records[g]
            rows = ellipse_rows(s, box[1], box[3])
            if rows[0] <= rows[1]:
                color = splats.colors[color_row(grid, g, splats.colors_per_camera)]
                for y in range(rows[0], rows[1] + 1):
                    if live_in_row[y - box[1]] == 0:
                        continue
                    span = ellipse_span(s, y, box[0], box[2])
                    for x in range(span[0], span[1] + 1):
                        pix = pixel_index(grid, cam, x, y)
                        if image.alphas[pix] != 0.0:
                            continue
                        raw_alpha, dx, dy = splat_alpha(s, float(x) + 0.5, float(y) + 0.5)
                        if raw_alpha == 0.0:
                            continue
                        alpha = wp.min(ALPHA_MAX, raw_alpha)
                        T = image.transmittance[pix]
                        next_T = T * (1.0 - alpha)
                        if next_T <= TRANSMITTANCE_MIN:
                            image.alphas[pix] = 1.0
                            pixels_left -= 1
                            live_in_row[y - box[1]] = live_in_row[y - box[1]] - 1
                            continue
                        image.colors[pix] = image.colors[pix] + color * (alpha * T)
                        image.transmittance[pix] = next_T
                        image.last_ids[pix] = j
            j += 1
        for y in range(box[1], box[3]):
            for x in range(box[0], box[2]):
                pix = pixel_index(grid, cam, x, y)
                T = image.transmittance[pix]
                if splats.has_background != 0:
                    image.colors[pix] = image.colors[pix] + splats.backgrounds[cam] * T
                image.alphas[pix] = 1.0 - T

    @wp.kernel(module="unique", enable_backward=False)
    def composite_tiles_bwd(
        offset: int,
        shard: int,
        grid: TileGrid,
        splats: Splats,
        image: Image,
        v_image_colors: wp.array(dtype=vecD),
        v_image_alphas: wp.array(dtype=float),
        grads: Grads,
        # per-pixel scratch: transmittance in front of the current splat, colour behind it
        scratch_T: wp.array(dtype=float),
        scratch_behind: wp.array(dtype=vecD),
    ):
        t = wp.tid() + offset
        cam = t // (grid.tile_width * grid.tile_height)
        box = tile_pixels(grid, t)
        start = grid.isect_offsets[t]
        last_in_tile = int(-1)
        last_in_row = rowvec()  # the deepest splat any pixel of the row blended: rows wake up below it
        for y in range(box[1], box[3]):
            deepest = int(-1)
            for x in range(box[0], box[2]):
                pix = pixel_index(grid, cam, x, y)
                scratch_T[pix] = image.transmittance[pix]
                scratch_behind[pix] = vecD()
                deepest = wp.max(deepest, image.last_ids[pix])
            last_in_row[y - box[1]] = deepest
            last_in_tile = wp.max(last_in_tile, deepest)
        bg = vecD()
        if splats.has_background != 0:
            bg = splats.backgrounds[cam]
        j = last_in_tile
        while j >= start:
            g = grid.flatten_ids[j]
            s = splats.records[g]
            rows = ellipse_rows(s, box[1], box[3])
            if rows[0] <= rows[1]:
                row = color_row(grid, g, splats.colors_per_camera)
                color = splats.colors[row]
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
                        pix = pixel_index(grid, cam, x, y)
                        if j > image.last_ids[pix]:
                            continue
                        raw_alpha, dx, dy = splat_alpha(s, float(x) + 0.5, float(y) + 0.5)
                        if raw_alpha == 0.0:
                            continue
                        alpha = wp.min(ALPHA_MAX, raw_alpha)
                        one_minus_inv = 1.0 / (1.0 - alpha)
                        T = scratch_T[pix] * one_minus_inv
                        scratch_T[pix] = T
                        weight = alpha * T
                        v_out = v_image_colors[pix]
                        g_color += v_out * weight
                        behind = scratch_behind[pix]
                        v_alpha = wp.dot(color * T - behind * one_minus_inv, v_out)
                        v_alpha += image.transmittance[pix] * one_minus_inv * (v_image_alphas[pix] - wp.dot(bg, v_out))
                        v_mean, v_conic, v_opacity = splat_alpha_vjp(s, raw_alpha, dx, dy, v_alpha)
                        g_mean += v_mean
                        g_abs += wp.vec2(wp.abs(v_mean[0]), wp.abs(v_mean[1]))
                        g_conic += v_conic
                        g_opacity += v_opacity
                        scratch_behind[pix] = behind + color * weight
                wp.atomic_add(grads.colors, shard, row, g_color)
                wp.atomic_add(grads.means2d, shard, g, g_mean)
                wp.atomic_add(grads.conics, shard, g, g_conic)
                wp.atomic_add(grads.opacities, shard, g, g_opacity)
                if grads.absgrad != 0:
                    wp.atomic_add(grads.means2d_abs, shard, g, g_abs)
            j -= 1

    return (composite_tiles_fwd, composite_tiles_bwd)
