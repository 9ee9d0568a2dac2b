"""Tile binning: which Gaussians touch which 16x16 tile, sorted front to back within each tile.

1. `count_tiles`: per (camera, Gaussian), the tiles its bounding box overlaps.
2. prefix sum (`wp.utils.array_scan`) -> where each Gaussian's intersections start.
3. `emit_intersections`: one 64-bit key per (Gaussian, tile): (camera * tiles + tile) << 32 | depth
   bits (order-preserving, negative depths included), value = flattened index camera * N + n.
4. `wp.utils.radix_sort_pairs` over only the key bits in use.
5. `tile_ranges`: start of each tile's run in the sorted list (gsplat's `isect_offsets`).
"""

from __future__ import annotations

import math

import torch
import warp as wp

from . import warp_runtime

wp.set_module_options(warp_runtime.KERNEL_OPTIONS)


@wp.func
def tile_bbox(mean2d: wp.vec2, radius: wp.vec2i, tile_size: int, tile_width: int, tile_height: int) -> wp.vec4i:
    """(x0, y0, x1, y1) half-open tile range covered by the Gaussian's pixel bounding box."""
    ts = float(tile_size)
    x0 = wp.clamp(int(wp.floor((mean2d[0] - float(radius[0])) / ts)), 0, tile_width)
    y0 = wp.clamp(int(wp.floor((mean2d[1] - float(radius[1])) / ts)), 0, tile_height)
    x1 = wp.clamp(int(wp.ceil((mean2d[0] + float(radius[0])) / ts)), 0, tile_width)
    y1 = wp.clamp(int(wp.ceil((mean2d[1] + float(radius[1])) / ts)), 0, tile_height)
    return wp.vec4i(x0, y0, x1, y1)


@wp.kernel
def count_tiles(
    offset: int,
    means2d: wp.array(dtype=wp.vec2),
    radii: wp.array(dtype=wp.vec2i),
    tile_size: int,
    tile_width: int,
    tile_height: int,
    tiles_per_gauss: wp.array(dtype=wp.int32),
):
    i = wp.tid() + offset
    r = radii[i]
    if r[0] <= 0 or r[1] <= 0:
        tiles_per_gauss[i] = 0
        return
    box = tile_bbox(means2d[i], r, tile_size, tile_width, tile_height)
    tiles_per_gauss[i] = (box[2] - box[0]) * (box[3] - box[1])


@wp.func
def depth_sort_bits(depth_bits: wp.int32) -> wp.int64:
    """float32 bit pattern -> unsigned 32-bit value with the same order as the float."""
    b = wp.int64(depth_bits) & wp.int64(0xFFFFFFFF)
    if (b & wp.int64(0x80000000)) != wp.int64(0):
        return (~b) & wp.int64(0xFFFFFFFF)
    return b | wp.int64(0x80000000)


@wp.kernel
def emit_intersections(
    offset: int,
    means2d: wp.array(dtype=wp.vec2),
    radii: wp.array(dtype=wp.vec2i),
    depth_bits: wp.array(dtype=wp.int32),
    tiles_per_gauss: wp.array(dtype=wp.int32),
    cum_tiles: wp.array(dtype=wp.int64),
    num_gaussians: int,
    tile_size: int,
    tile_width: int,
    tile_height: int,
    keys: wp.array(dtype=wp.int64),
    values: wp.array(dtype=wp.int32),
):
    i = wp.tid() + offset
    count = tiles_per_gauss[i]
    if count == 0:
        return
    box = tile_bbox(means2d[i], radii[i], tile_size, tile_width, tile_height)
    cam = i // num_gaussians
    depth_key = depth_sort_bits(depth_bits[i])
    cursor = cum_tiles[i] - wp.int64(count)
    for ty in range(box[1], box[3]):
        for tx in range(box[0], box[2]):
            tile = wp.int64(cam * tile_width * tile_height + ty * tile_width + tx)
            keys[cursor] = (tile << wp.int64(32)) | depth_key
            values[cursor] = i
            cursor += wp.int64(1)


@wp.kernel
def tile_ranges(
    offset: int,
    keys: wp.array(dtype=wp.int64),
    num_isects: int,
    num_tiles: int,
    offsets: wp.array(dtype=wp.int32),
):
    """offsets[t] = index of the first sorted intersection of tile t (or of the next non-empty one)."""
    i = wp.tid() + offset
    tile = int(keys[i] >> wp.int64(32))
    prev = int(-1)
    if i > 0:
        prev = int(keys[i - 1] >> wp.int64(32))
    for t in range(prev + 1, tile + 1):
        offsets[t] = i
    if i == num_isects - 1:
        for t in range(tile + 1, num_tiles):
            offsets[t] = num_isects


def isect_tiles(
    means2d: torch.Tensor,
    radii: torch.Tensor,
    depths: torch.Tensor,
    tile_size: int,
    tile_width: int,
    tile_height: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bin projected Gaussians (C, N, ...) into tiles.

    Returns tiles_per_gauss (C, N) int32, isect_ids (M,) int64 sorted keys and flatten_ids (M,)
    int32 indices into the flattened (C * N) Gaussians, front to back within each tile.
    """
    C, N = depths.shape
    dev = means2d.device
    num_tiles = C * tile_width * tile_height
    if num_tiles.bit_length() > 31:
        raise ValueError(f"too many tiles for 64-bit sort keys: {C} cameras x {tile_width * tile_height} tiles")
    tiles_per_gauss = torch.empty((C, N), dtype=torch.int32, device=dev)
    A = warp_runtime.array
    m2d = A(means2d.reshape(-1, 2), wp.vec2)
    rad = A(radii.reshape(-1, 2), wp.vec2i)
    warp_runtime.launch(
        count_tiles, C * N, [m2d, rad, tile_size, tile_width, tile_height], [A(tiles_per_gauss.view(-1))], device=dev
    )

    cum_tiles = torch.empty(C * N, dtype=torch.int64, device=dev)
    wp.utils.array_scan(A(tiles_per_gauss.view(-1).to(torch.int64)), A(cum_tiles), inclusive=True)
    num_isects = int(cum_tiles[-1].item()) if C * N > 0 else 0
    if num_isects >= 2**31:
        raise ValueError(f"{num_isects} tile intersections exceed the int32 index range; render fewer cameras at once")

    # radix sort needs scratch space: arrays of twice the length
    keys = torch.empty(2 * max(num_isects, 1), dtype=torch.int64, device=dev)
    values = torch.empty(2 * max(num_isects, 1), dtype=torch.int32, device=dev)
    warp_runtime.launch(
        emit_intersections,
        C * N,
        [
            m2d,
            rad,
            A(depths.reshape(-1).view(torch.int32)),
            A(tiles_per_gauss.view(-1)),
            A(cum_tiles),
            N,
            tile_size,
            tile_width,
            tile_height,
        ],
        [A(keys), A(values)],
        device=dev,
    )
    if num_isects > 0:
        end_bit = 32 + max(1, (num_tiles - 1).bit_length())
        wp.utils.radix_sort_pairs(A(keys), A(values), num_isects, 0, end_bit)
    return tiles_per_gauss, keys[:num_isects], values[:num_isects]


def isect_offset_encode(isect_ids: torch.Tensor, n_cameras: int, tile_width: int, tile_height: int) -> torch.Tensor:
    """Start of each tile's run in the sorted intersections: (C, tile_height, tile_width) int32."""
    num_tiles = n_cameras * tile_width * tile_height
    offsets = torch.zeros(num_tiles, dtype=torch.int32, device=isect_ids.device)
    n = isect_ids.shape[0]
    if n > 0:
        warp_runtime.launch(
            tile_ranges,
            n,
            [warp_runtime.array(isect_ids), n, num_tiles],
            [warp_runtime.array(offsets)],
            device=isect_ids.device,
        )
    return offsets.view(n_cameras, tile_height, tile_width)


def tile_grid(width: int, height: int, tile_size: int) -> tuple[int, int]:
    return math.ceil(width / tile_size), math.ceil(height / tile_size)
