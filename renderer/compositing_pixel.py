"""Compositing kernels: the shared argument structs and the per-pixel kernels (the CUDA path).

One thread per pixel; threads are numbered tile by tile so the pixels of a tile run together (one
CUDA block per 16x16 tile). Rules, as gsplat / INRIA 3DGS: pixel centres at +0.5;
alpha = min(0.99, opacity * exp(-power)); skip alpha < 1/255; stop before transmittance would
fall to 1e-4 (that splat is not blended). The backward pass walks each pixel's list back to front,
recovering transmittance by division, and accumulates per-Gaussian gradients atomically.

Kernels and structs are generated per channel count D and cached. `compositing_tile.py` holds the
CPU variant over the same structs; `compositing.py` the autograd function that launches them.
"""

import functools

import warp as wp

from . import warp_runtime
from .gaussian_math import ALPHA_MAX, TRANSMITTANCE_MIN, splat2d, splat_alpha, splat_alpha_vjp

wp.set_module_options(warp_runtime.KERNEL_OPTIONS)


@wp.struct
class TileGrid:
    """Image and tile geometry plus the binning result (sorted splat ids per tile)."""

    num_cameras: int
    num_gaussians: int
    width: int
    height: int
    tile_size: int
    tile_width: int
    tile_height: int
    isect_offsets: wp.array(dtype=wp.int32)  # first sorted intersection of each (camera, tile)
    flatten_ids: wp.array(dtype=wp.int32)  # camera * N + n, front to back within each tile


@wp.func
def tile_range(grid: TileGrid, t: int) -> wp.vec2i:
    """[start, end) of global tile t's run in the sorted intersections."""
    end = grid.flatten_ids.shape[0]
    if t + 1 < grid.num_cameras * grid.tile_width * grid.tile_height:
        end = grid.isect_offsets[t + 1]
    return wp.vec2i(grid.isect_offsets[t], end)


@wp.func
def tile_pixels(grid: TileGrid, t: int) -> wp.vec4i:
    """Pixel rectangle [x0, x1) x [y0, y1) of global tile t, as (x0, y0, x1, y1)."""
    tiles = grid.tile_width * grid.tile_height
    tile = t - (t // tiles) * tiles
    ty = tile // grid.tile_width
    x0 = (tile - ty * grid.tile_width) * grid.tile_size
    y0 = ty * grid.tile_size
    return wp.vec4i(x0, y0, wp.min(x0 + grid.tile_size, grid.width), wp.min(y0 + grid.tile_size, grid.height))


@wp.func
def pixel_index(grid: TileGrid, cam: int, x: int, y: int) -> int:
    return (cam * grid.height + y) * grid.width + x


@wp.func
def pixel_of_thread(grid: TileGrid, i: int):
    """Thread i of a per-pixel launch -> (global tile, camera, x, y); x = -1 outside the image.
    Threads run tile by tile, so a tile's pixels are one CUDA block."""
    tile_px = grid.tile_size * grid.tile_size
    t = i // tile_px
    local = i - t * tile_px
    box = tile_pixels(grid, t)
    ly = local // grid.tile_size
    x = box[0] + local - ly * grid.tile_size
    y = box[1] + ly
    if x >= box[2] or y >= box[3]:
        x = -1
    return t, t // (grid.tile_width * grid.tile_height), x, y


@wp.func
def color_row(grid: TileGrid, g: int, colors_per_camera: int) -> int:
    """Row of the colour table for flattened splat g: per camera (g) or shared (g mod N)."""
    if colors_per_camera != 0:
        return g
    return g - (g // grid.num_gaussians) * grid.num_gaussians


@functools.cache
def composite_types(D: int):
    """(vecD, Splats, Image, Grads): the structs of D-channel compositing kernels."""
    vecD = wp.types.vector(length=D, dtype=wp.float32)

    @wp.struct
    class Splats:
        records: wp.array(dtype=splat2d)  # (C * N) packed 2D splats
        colors: wp.array(dtype=vecD)  # (C * N) or (N) shared by all cameras
        colors_per_camera: int
        backgrounds: wp.array(dtype=vecD)  # (C)
        has_background: int

    @wp.struct
    class Image:
        colors: wp.array(dtype=vecD)  # (C * H * W), background included
        alphas: wp.array(dtype=float)
        transmittance: wp.array(dtype=float)  # final T (kept apart: 1 - alpha loses precision)
        last_ids: wp.array(dtype=wp.int32)  # last blended intersection, -1 if none

    @wp.struct
    class Grads:
        # one slice per CPU worker (shard); accumulated atomically on CUDA
        means2d: wp.array2d(dtype=wp.vec2)
        conics: wp.array2d(dtype=wp.vec3)
        opacities: wp.array2d(dtype=float)
        colors: wp.array2d(dtype=vecD)
        absgrad: int
        means2d_abs: wp.array2d(dtype=wp.vec2)

    return (vecD, Splats, Image, Grads)


@functools.cache
def pixel_kernels(D: int):
    """(forward, backward) per-pixel compositing kernels for D channels."""
    vecD, Splats, Image, Grads = composite_types(D)

    @wp.kernel(module="unique", enable_backward=False)
    def composite_pixels_fwd(offset: int, grid: TileGrid, splats: Splats, image: Image):
        t, cam, x, y = pixel_of_thread(grid, wp.tid() + offset)
        if x < 0:
            return  # past the image edge in a border tile
        pix = pixel_index(grid, cam, x, y)
        px = float(x) + 0.5
        py = float(y) + 0.5
        span = tile_range(grid, t)
        T = float(1.0)
        acc = vecD()
        last = int(-1)
        for j in range(span[0], span[1]):
            g = grid.flatten_ids[j]
            raw_alpha, dx, dy = splat_alpha(splats.records[g], px, py)
            if raw_alpha == 0.0:
                continue
            alpha = wp.min(ALPHA_MAX, raw_alpha)
            next_T = T * (1.0 - alpha)
            if next_T <= TRANSMITTANCE_MIN:
                break
            acc += splats.colors[color_row(grid, g, splats.colors_per_camera)] * (alpha * T)
            last = j
            T = next_T
        if splats.has_background != 0:
            acc += splats.backgrounds[cam] * T
        image.colors[pix] = acc
        image.alphas[pix] = 1.0 - T
        image.transmittance[pix] = T
        image.last_ids[pix] = last

    @wp.kernel(module="unique", enable_backward=False)
    def composite_pixels_bwd(
        offset: int,
        shard: int,
        grid: TileGrid,
        splats: Splats,
        image: Image,
        v_image_colors: wp.array(dtype=vecD),
        v_image_alphas: wp.array(dtype=float),
        grads: Grads,
    ):
        t, cam, x, y = pixel_of_thread(grid, wp.tid() + offset)
        if x < 0:
            return  # past the image edge in a border tile
        pix = pixel_index(grid, cam, x, y)
        start = grid.isect_offsets[t]
        px = float(x) + 0.5
        py = float(y) + 0.5
        T_final = image.transmittance[pix]
        T = T_final
        v_out = v_image_colors[pix]
        v_out_alpha = v_image_alphas[pix]
        v_bg_term = float(0.0)
        if splats.has_background != 0:
            v_bg_term = wp.dot(splats.backgrounds[cam], v_out)
        behind = vecD()  # sum of colour * weight of the splats behind the current one
        j = image.last_ids[pix]
        while j >= start:
            g = grid.flatten_ids[j]
            s = splats.records[g]
            raw_alpha, dx, dy = splat_alpha(s, px, py)
            if raw_alpha > 0.0:
                alpha = wp.min(ALPHA_MAX, raw_alpha)
                row = color_row(grid, g, splats.colors_per_camera)
                one_minus_inv = 1.0 / (1.0 - alpha)
                T = T * one_minus_inv
                weight = alpha * T
                color = splats.colors[row]
                wp.atomic_add(grads.colors, shard, row, v_out * weight)
                v_alpha = wp.dot(color * T - behind * one_minus_inv, v_out)
                v_alpha += T_final * one_minus_inv * (v_out_alpha - v_bg_term)
                v_mean, v_conic, v_opacity = splat_alpha_vjp(s, raw_alpha, dx, dy, v_alpha)
                wp.atomic_add(grads.conics, shard, g, v_conic)
                wp.atomic_add(grads.means2d, shard, g, v_mean)
                wp.atomic_add(grads.opacities, shard, g, v_opacity)
                if grads.absgrad != 0:
                    wp.atomic_add(grads.means2d_abs, shard, g, wp.vec2(wp.abs(v_mean[0]), wp.abs(v_mean[1])))
                behind += color * weight
            j -= 1

    return (composite_pixels_fwd, composite_pixels_bwd)
