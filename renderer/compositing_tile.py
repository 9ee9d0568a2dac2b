"""CPU variant of the compositing kernels: one thread per tile, splats outer, a tile row of pixels
inner, written for the CPU's vector unit.

A CPU core gains nothing from 256 threads walking the same list; instead each tile walks its
depth-sorted list once and, for every splat, visits the tile rows its ellipse
`power <= log(255 * opacity)` can reach (solved once per splat, with a margin against rounding).
A row's pixels are then the lanes of one loop with no branches in it, which the compiler turns
into SIMD code (16 lanes with AVX-512): alpha, the skip and stop rules and the updates become
masked selects, and the exponential is a polynomial (`gaussian_math.exp_neg`), since a call to
the C library's `expf` cannot be vectorised. Scalar code that solved each row's pixel span and
visited only those pixels ran 2-2.5x slower on trained lego (most spans are 2-3 pixels long and
the per-pixel branches cost more than the extra lanes).

Per-tile state (transmittance, last blended splat, colour, and in the backward pass the incoming
gradients and the colour behind) lives in local arrays laid out [row][channel][lane], so each
lane loop reads and writes contiguous memory. The lane loops are `while` loops on purpose: Warp
compiles `for ... in range()` into an iterator the loop vectoriser does not recognise.

Pair by pair, the decisions are those of the per-pixel kernels (`splat_alpha`): the same power
(bit for bit) against the same limit; alpha differs from theirs by the polynomial's rounding
(~1e-7 relative). Forward and backward evaluate alpha with the same function on the same
arguments, so they agree exactly on which splats each pixel blends. Gradients are summed per
splat over its lanes, in a fixed order, before they are written.
"""

import functools

import warp as wp

from . import warp_runtime
from .compositing_pixel import TileGrid, color_row, composite_types, pixel_index, tile_pixels, tile_range
from .gaussian_math import ALPHA_MAX, TRANSMITTANCE_MIN, lane_alpha, splat2d

wp.set_module_options(warp_runtime.KERNEL_OPTIONS)

MAX_TILE_ROWS = 32  # = validation.MAX_TILE_SIZE
# Rows whose pixel centres lie this close outside the solved ellipse are visited too (float32 roots).
ROW_MARGIN = wp.constant(0.05)
# Channels one pass of the tile kernels composites (the per-tile colour arrays grow with it);
# wider features run in chunks of this many channels.
MAX_TILE_CHANNELS = 8
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
    first = wp.max(y0, int(wp.ceil(s[1] - half - 0.5 - ROW_MARGIN)))
    last = wp.min(y1 - 1, int(wp.floor(s[1] + half - 0.5 + ROW_MARGIN)))
    return wp.vec2i(first, last)


def lanes_for(tile_size: int) -> int:
    """Lanes of a tile row: 16 for tiles up to 16 pixels wide (the default), else 32."""
    return 16 if tile_size <= 16 else 32


@functools.cache
def tile_kernels(D: int, L: int = 16):
    """(forward, backward) per-tile compositing kernels for D <= MAX_TILE_CHANNELS channels and
    tiles at most L pixels wide and high (L = lanes_for(tile_size))."""
    if D > MAX_TILE_CHANNELS:
        raise ValueError(f"internal error: tile kernels take at most {MAX_TILE_CHANNELS} channels, got {D}")
    vecD, Splats, Image, Grads = composite_types(D)
    LaneF = wp.types.vector(length=L, dtype=wp.float32)
    TileF = wp.types.matrix(shape=(L, L), dtype=wp.float32)  # [row, lane]
    TileI = wp.types.matrix(shape=(L, L), dtype=wp.int32)
    ChanF = wp.types.matrix(shape=(L * D, L), dtype=wp.float32)  # [row * D + channel, lane]
    LaneD = wp.types.matrix(shape=(D, L), dtype=wp.float32)  # [channel, lane]
    # no fused multiply-adds: forward and backward must compute alpha bit for bit alike
    options = warp_runtime.vector_kernel_options()

    @wp.kernel(module="unique", enable_backward=False, module_options=options)
    def composite_tiles_fwd(offset: int, grid: TileGrid, splats: Splats, image: Image):
        t = wp.tid() + offset
        cam = t // (grid.tile_width * grid.tile_height)
        box = tile_pixels(grid, t)
        rows_n = box[3] - box[1]
        cols_n = box[2] - box[0]
        # transmittance in front of the next splat; stored negated once the pixel has stopped
        T = TileF()
        last = TileI()  # last blended intersection, -1 if none
        acc = ChanF()  # colour so far
        live_in_row = rowvec()  # pixels of each row still compositing
        for r in range(rows_n):
            live_in_row[r] = cols_n
            for k in range(L):
                T[r, k] = wp.where(k < cols_n, 1.0, -1.0)  # lanes past the image edge never blend
                last[r, k] = -1
        pixels_left = rows_n * cols_n
        span = tile_range(grid, t)
        j = span[0]
        while j < span[1] and pixels_left > 0:
            g = grid.flatten_ids[j]
            s = splats.records[g]
            rows = ellipse_rows(s, box[1], box[3])
            if rows[0] <= rows[1]:
                color = splats.colors[color_row(grid, g, splats.colors_per_camera)]
                for y in range(rows[0], rows[1] + 1):
                    r = y - box[1]
                    if live_in_row[r] == 0:
                        continue
                    py = float(y) + 0.5
                    stopped = int(0)
                    k = int(0)
                    while k < L:
                        raw_alpha, inside, dx, dy = lane_alpha(s, box[0] + k, py)
                        Tk = T[r, k]
                        alpha = wp.min(ALPHA_MAX, raw_alpha)
                        next_T = Tk * (1.0 - alpha)
                        blends = inside and Tk > 0.0
                        stops = blends and next_T <= TRANSMITTANCE_MIN  # that splat is not blended
                        blends = blends and not stops
                        weight = wp.where(blends, alpha * Tk, 0.0)
                        for ch in range(D):  # unrolled: D is a constant
                            acc[r * D + ch, k] = acc[r * D + ch, k] + color[ch] * weight
                        T[r, k] = wp.where(blends, next_T, wp.where(stops, -Tk, Tk))
                        last[r, k] = wp.where(blends, j, last[r, k])
                        stopped += wp.where(stops, 1, 0)
                        k += 1
                    live_in_row[r] = live_in_row[r] - stopped
                    pixels_left -= stopped
            j += 1
        bg = vecD()
        if splats.has_background != 0:
            bg = splats.backgrounds[cam]
        for r in range(rows_n):
            for k in range(cols_n):
                pix = pixel_index(grid, cam, box[0] + k, box[1] + r)
                Tk = wp.abs(T[r, k])
                out = bg * Tk
                for ch in range(D):
                    out[ch] = out[ch] + acc[r * D + ch, k]
                image.colors[pix] = out
                image.transmittance[pix] = Tk
                image.alphas[pix] = 1.0 - Tk
                image.last_ids[pix] = last[r, k]

    @wp.kernel(module="unique", enable_backward=False, module_options=options)
    def composite_tiles_bwd(
        offset: int,
        shard: int,
        grid: TileGrid,
        splats: Splats,
        image: Image,
        v_image_colors: wp.array(dtype=vecD),
        v_image_alphas: wp.array(dtype=float),
        grads: Grads,
    ):
        t = wp.tid() + offset
        cam = t // (grid.tile_width * grid.tile_height)
        box = tile_pixels(grid, t)
        rows_n = box[3] - box[1]
        cols_n = box[2] - box[0]
        start = grid.isect_offsets[t]
        bg = vecD()
        if splats.has_background != 0:
            bg = splats.backgrounds[cam]
        T = TileF()  # transmittance in front of the current splat, from the final one backwards
        T_final_v = TileF()  # final T x (d loss / d alpha - background . d loss / d colour)
        last = TileI()
        v_out = ChanF()  # d loss / d pixel colour
        behind = ChanF()  # colour blended behind the current splat
        last_in_row = rowvec()  # the deepest splat any pixel of the row blended: rows wake up below it
        last_in_tile = int(-1)
        for r in range(rows_n):
            deepest = int(-1)
            for k in range(L):
                last[r, k] = -1  # lanes past the image edge never blend
            for k in range(cols_n):
                pix = pixel_index(grid, cam, box[0] + k, box[1] + r)
                v_pix = v_image_colors[pix]
                for ch in range(D):
                    v_out[r * D + ch, k] = v_pix[ch]
                T[r, k] = image.transmittance[pix]
                T_final_v[r, k] = image.transmittance[pix] * (v_image_alphas[pix] - wp.dot(bg, v_pix))
                last[r, k] = image.last_ids[pix]
                deepest = wp.max(deepest, last[r, k])
            last_in_row[r] = deepest
            last_in_tile = wp.max(last_in_tile, deepest)
        j = last_in_tile
        while j >= start:
            g = grid.flatten_ids[j]
            s = splats.records[g]
            rows = ellipse_rows(s, box[1], box[3])
            if rows[0] <= rows[1]:
                row = color_row(grid, g, splats.colors_per_camera)
                color = splats.colors[row]
                a = s[2]
                b = s[3]
                c = s[4]
                inv_opacity = 1.0 / s[5]
                # per-lane sums over the splat's rows, added up across lanes at the end
                g_mean_x = LaneF()
                g_mean_y = LaneF()
                g_abs_x = LaneF()
                g_abs_y = LaneF()
                g_conic_a = LaneF()
                g_conic_b = LaneF()
                g_conic_c = LaneF()
                g_opacity = LaneF()
                g_color = LaneD()
                touched = int(0)
                for y in range(rows[0], rows[1] + 1):
                    r = y - box[1]
                    if j > last_in_row[r]:
                        continue
                    touched = 1
                    py = float(y) + 0.5
                    k = int(0)
                    while k < L:
                        v_dot_color = float(0.0)
                        v_dot_behind = float(0.0)
                        for ch in range(D):  # unrolled: D is a constant
                            v_dot_color += color[ch] * v_out[r * D + ch, k]
                            v_dot_behind += behind[r * D + ch, k] * v_out[r * D + ch, k]
                        raw_alpha, inside, dx, dy = lane_alpha(s, box[0] + k, py)
                        blended = inside and j <= last[r, k]
                        alpha = wp.min(ALPHA_MAX, raw_alpha)
                        one_minus_inv = 1.0 / (1.0 - alpha)
                        T_here = T[r, k] * one_minus_inv
                        weight = wp.where(blended, alpha * T_here, 0.0)
                        for ch in range(D):
                            g_color[ch, k] = g_color[ch, k] + v_out[r * D + ch, k] * weight
                            behind[r * D + ch, k] = behind[r * D + ch, k] + color[ch] * weight
                        v_alpha = v_dot_color * T_here - v_dot_behind * one_minus_inv + T_final_v[r, k] * one_minus_inv
                        # the clamp at ALPHA_MAX passes no gradient to the splat's parameters
                        v_power = wp.where(blended and raw_alpha <= ALPHA_MAX, -raw_alpha * v_alpha, 0.0)
                        v_mx = v_power * (a * dx + b * dy)
                        v_my = v_power * (b * dx + c * dy)
                        g_mean_x[k] = g_mean_x[k] + v_mx
                        g_mean_y[k] = g_mean_y[k] + v_my
                        g_abs_x[k] = g_abs_x[k] + wp.abs(v_mx)
                        g_abs_y[k] = g_abs_y[k] + wp.abs(v_my)
                        g_conic_a[k] = g_conic_a[k] + 0.5 * v_power * dx * dx
                        g_conic_b[k] = g_conic_b[k] + v_power * dx * dy
                        g_conic_c[k] = g_conic_c[k] + 0.5 * v_power * dy * dy
                        g_opacity[k] = g_opacity[k] - v_power * inv_opacity
                        T[r, k] = wp.where(blended, T_here, T[r, k])
                        k += 1
                if touched != 0:
                    g_mean = wp.vec2(0.0)
                    g_abs = wp.vec2(0.0)
                    g_conic = wp.vec3(0.0)
                    g_op = float(0.0)
                    g_col = vecD()
                    for k in range(L):
                        g_mean += wp.vec2(g_mean_x[k], g_mean_y[k])
                        g_abs += wp.vec2(g_abs_x[k], g_abs_y[k])
                        g_conic += wp.vec3(g_conic_a[k], g_conic_b[k], g_conic_c[k])
                        g_op += g_opacity[k]
                        for ch in range(D):
                            g_col[ch] = g_col[ch] + g_color[ch, k]
                    wp.atomic_add(grads.colors, shard, row, g_col)
                    wp.atomic_add(grads.means2d, shard, g, g_mean)
                    wp.atomic_add(grads.conics, shard, g, g_conic)
                    wp.atomic_add(grads.opacities, shard, g, g_op)
                    if grads.absgrad != 0:
                        wp.atomic_add(grads.means2d_abs, shard, g, g_abs)
            j -= 1

    return (composite_tiles_fwd, composite_tiles_bwd)
