"""Multiresolution hash encoding (Instant-NGP), tiny-cuda-nn semantics, as Warp kernel pairs.

Level l has scale s_l = base_resolution * per_level_scale^l - 1 and resolution ceil(s_l) + 1; a
point x in [0, 1]^d sits at x * s_l + 0.5 in that level's grid, and its feature is the d-linear
interpolation of the F-vectors stored at the 2^d surrounding vertices. Vertex v maps to a table
row by dense indexing (v_0 + v_1 res + v_2 res^2) while res^d fits the level's table, else by the
spatial hash XOR_i (v_i * pi_i) (mod 2^32, pi = 1, 2654435761, 805459861); either then modulo the
table size, which is min(res^d rounded up to a multiple of 8, 2^log2_hashmap_size). Output:
(N, L * F), level-major, like tiny-cuda-nn, so its configurations and results carry over.
Points outside [0, 1]^d are clamped onto it.

One launch per level, one thread per point: each level's table is its own parameter
(`HashGridEncoding.embeddings`). The backward pass scatters into the table gradients; on the CPU
(where Warp's atomics are plain adds) the levels run side by side, each level's launch on one
worker thread, so no table is written by two threads and no private copies are needed.
"""

from __future__ import annotations

import math

import torch
import warp as wp

from splat.renderer import warp_runtime

wp.set_module_options(warp_runtime.KERNEL_OPTIONS)

PRIMES = (1, 2654435761, 805459861)


@wp.func
def vertex_index(v0: int, v1: int, v2: int, dims: int, res: int, table_size: int, dense: int) -> int:
    if dense != 0:
        idx = v0 + v1 * res
        if dims == 3:
            idx = idx + v2 * res * res
        return idx % table_size
    h = wp.uint32(v0) ^ (wp.uint32(v1) * wp.uint32(2654435761))
    if dims == 3:
        h = h ^ (wp.uint32(v2) * wp.uint32(805459861))
    return int(h % wp.uint32(table_size))


@wp.func
def corner(cell: int, frac: float, bit: int):
    """Vertex coordinate and linear weight of one corner along one axis."""
    if bit != 0:
        return cell + 1, frac
    return cell, 1.0 - frac


@wp.func
def cell_of(positions: wp.array2d(dtype=float), n: int, dims: int, scale: float):
    """Grid cell and fractional position of point n (clamped into [0, 1]^d) at a level's scale."""
    p0 = wp.clamp(positions[n, 0], 0.0, 1.0) * scale + 0.5
    p1 = wp.clamp(positions[n, 1], 0.0, 1.0) * scale + 0.5
    p2 = float(0.0)
    if dims == 3:
        p2 = wp.clamp(positions[n, 2], 0.0, 1.0) * scale + 0.5
    c = wp.vec3i(int(wp.floor(p0)), int(wp.floor(p1)), int(wp.floor(p2)))
    return c, wp.vec3(p0 - float(c[0]), p1 - float(c[1]), p2 - float(c[2]))


@wp.func
def corner_weight(dims: int, c: wp.vec3i, fr: wp.vec3, k: int):
    """Vertex (v0, v1, v2) and d-linear weight of corner k (bit i: +1 along axis i)."""
    v0, w0 = corner(c[0], fr[0], k & 1)
    v1, w1 = corner(c[1], fr[1], (k >> 1) & 1)
    v2, w2 = corner(c[2], fr[2], (k >> 2) & 1)
    w = w0 * w1
    if dims == 3:
        w = w * w2
    return wp.vec3i(v0, v1, v2), w


@wp.kernel
def hash_encode_fwd(
    offset: int,
    positions: wp.array2d(dtype=float),
    table: wp.array2d(dtype=float),
    scale: float,
    res: int,
    dense: int,
    column: int,
    out: wp.array2d(dtype=float),
):
    n = wp.tid() + offset
    dims = positions.shape[1]
    F = table.shape[1]
    c, fr = cell_of(positions, n, dims, scale)
    for f in range(F):
        out[n, column + f] = 0.0
    for k in range(1 << dims):
        v, w = corner_weight(dims, c, fr, k)
        row = vertex_index(v[0], v[1], v[2], dims, res, table.shape[0], dense)
        for f in range(F):
            out[n, column + f] = out[n, column + f] + w * table[row, f]


@wp.kernel
def hash_encode_bwd(
    offset: int,
    shard: int,
    positions: wp.array2d(dtype=float),
    v_out: wp.array2d(dtype=float),
    scale: float,
    res: int,
    dense: int,
    column: int,
    v_table: wp.array3d(dtype=float),  # (shards, entries, F)
):
    n = wp.tid() + offset
    dims = positions.shape[1]
    F = v_table.shape[2]
    c, fr = cell_of(positions, n, dims, scale)
    for k in range(1 << dims):
        v, w = corner_weight(dims, c, fr, k)
        row = vertex_index(v[0], v[1], v[2], dims, res, v_table.shape[1], dense)
        for f in range(F):
            wp.atomic_add(v_table, shard, row, f, w * v_out[n, column + f])


def level_layout(dims: int, n_levels: int, log2_hashmap_size: int, base_resolution: int, per_level_scale: float):
    """Per level: (scale, resolution, table entries, dense?) as tiny-cuda-nn computes them."""
    max_entries = 1 << log2_hashmap_size
    levels = []
    for level in range(n_levels):
        scale = base_resolution * per_level_scale**level - 1.0
        res = int(math.ceil(scale)) + 1
        full = res**dims
        entries = min((full + 7) // 8 * 8, max_entries)
        levels.append((scale, res, entries, full <= entries))
    return levels


class _HashEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, positions, layout, n_features, *tables):
        N = positions.shape[0]
        dev = positions.device
        out = torch.empty((N, len(tables) * n_features), dtype=torch.float32, device=dev)
        A = warp_runtime.array
        for level, ((scale, res, _, dense), table) in enumerate(zip(layout, tables)):
            warp_runtime.launch(
                hash_encode_fwd,
                N,
                [A(positions, dims=2), A(table, dims=2), float(scale), int(res), int(dense), level * n_features],
                [A(out, dims=2)],
                device=dev,
            )
        ctx.save_for_backward(positions)
        ctx.layout, ctx.n_features = layout, n_features
        ctx.table_shapes = [t.shape for t in tables]
        return out

    @staticmethod
    def backward(ctx, v_out):
        (positions,) = ctx.saved_tensors
        N = positions.shape[0]
        dev = positions.device
        v_out = v_out.contiguous().float()
        A = warp_runtime.array
        # one level per worker thread: each level's table is written by one thread, no private copies
        grads = [torch.zeros((1, *shape), dtype=torch.float32, device=dev) for shape in ctx.table_shapes]
        warp_runtime.launch_side_by_side(
            [
                (
                    hash_encode_bwd,
                    N,
                    [
                        A(positions, dims=2),
                        A(v_out, dims=2),
                        float(scale),
                        int(res),
                        int(dense),
                        level * ctx.n_features,
                    ],
                    [A(v_table, dims=3)],
                    True,
                )
                for level, ((scale, res, _, dense), v_table) in enumerate(zip(ctx.layout, grads))
            ],
            dev,
        )
        grads = [g[0] for g in grads]
        return (None, None, None, *grads)


class HashGridEncoding(torch.nn.Module):
    """Multiresolution hash encoding of points in [0, 1]^d (d = 2 or 3) -> (N, n_levels * F).

    Defaults are tiny-cuda-nn's. Per-level tables are `self.embeddings[l]`, (entries_l, F)
    parameters initialised uniformly in [-1e-4, 1e-4]. Positions are not differentiated.
    """

    def __init__(
        self,
        n_input_dims: int = 3,
        n_levels: int = 16,
        n_features_per_level: int = 2,
        log2_hashmap_size: int = 19,
        base_resolution: int = 16,
        per_level_scale: float = 2.0,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if n_input_dims not in (2, 3):
            raise ValueError(f"n_input_dims: expected 2 or 3, got {n_input_dims}")
        if n_levels < 1 or n_features_per_level < 1 or not 1 <= log2_hashmap_size <= 30 or base_resolution < 1:
            raise ValueError(
                "HashGridEncoding: n_levels, n_features_per_level, base_resolution must be >= 1 and "
                "log2_hashmap_size in 1..30"
            )
        if per_level_scale < 1.0:
            raise ValueError(f"per_level_scale: expected >= 1, got {per_level_scale}")
        self.n_input_dims = n_input_dims
        self.n_levels = n_levels
        self.n_features_per_level = n_features_per_level
        self.log2_hashmap_size = log2_hashmap_size
        self.base_resolution = base_resolution
        self.per_level_scale = per_level_scale
        self.layout = level_layout(n_input_dims, n_levels, log2_hashmap_size, base_resolution, per_level_scale)
        self.layout_tensor_cache: dict = {}  # device -> the layout as index tensors (fused kernels)
        self.embeddings = torch.nn.ParameterList(
            torch.nn.Parameter((torch.rand((entries, n_features_per_level), generator=generator) * 2 - 1) * 1e-4)
            for _, _, entries, _ in self.layout
        )

    @property
    def n_output_dims(self) -> int:
        return self.n_levels * self.n_features_per_level

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        if positions.dim() != 2 or positions.shape[1] != self.n_input_dims:
            raise ValueError(f"positions: expected shape (N, {self.n_input_dims}), got {tuple(positions.shape)}")
        return _HashEncode.apply(
            positions.detach().float().contiguous(), self.layout, self.n_features_per_level, *self.embeddings
        )


def hash_encode_torch(positions: torch.Tensor, tables: list[torch.Tensor], layout) -> torch.Tensor:
    """Pure-torch twin (any float dtype; int64 hashing), the kernels' test oracle."""
    dims = positions.shape[1]
    positions = positions.clamp(0, 1)
    outs = []
    for (scale, res, entries, dense), table in zip(layout, tables):
        pos = positions * scale + 0.5
        cell = torch.floor(pos).long()
        frac = pos - cell
        feat = 0
        for k in range(1 << dims):
            bits = [(k >> i) & 1 for i in range(dims)]
            v = [cell[:, i] + bits[i] for i in range(dims)]
            w = 1
            for i in range(dims):
                w = w * (frac[:, i] if bits[i] else 1 - frac[:, i])
            if dense:
                idx = v[0] + v[1] * res + (v[2] * res * res if dims == 3 else 0)
            else:
                h = v[0] * PRIMES[0]
                for i in range(1, dims):
                    h = h ^ ((v[i] * PRIMES[i]) & 0xFFFFFFFF)
                idx = h & 0xFFFFFFFF
            feat = feat + w[:, None] * table[idx % entries]
        outs.append(feat)
    return torch.cat(outs, dim=1)
