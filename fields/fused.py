"""Hash encoding fused with a small ReLU MLP (width 64, no biases, tiny-cuda-nn style).

Forward: one kernel, one thread per point: interpolate every level of the hash grid into a local
vector, run it through the MLP in registers, write the outputs (and, when training, the encoded
input and each hidden activation, which the backward pass needs).

Backward: one kernel, one thread per point: back-propagate the output gradient through the layers
(ReLU masks from the saved activations), write each layer's pre-activation gradient, and scatter
the encoding's gradient into the hash tables. The weight gradients are then batch GEMMs
(delta_l^T a_(l-1)), as tiny-cuda-nn computes them too; per-thread atomics on a 64x64 matrix would
serialise every point on the same few thousand addresses.

The tables enter the kernels as one flat buffer (the per-level parameters concatenated each
call; the copy costs one pass over the tables).
"""

from __future__ import annotations

import math

import torch
import warp as wp

from splat.renderer import warp_runtime

from .hash_grid import HashGridEncoding, cell_of, corner_weight, hash_encode_torch, vertex_index

wp.set_module_options(warp_runtime.KERNEL_OPTIONS)

WIDTH = 64
MAX_INPUT = 64  # n_levels * n_features_per_level
vec_w = wp.types.vector(length=WIDTH, dtype=float)


@wp.struct
class Grid:
    tables: wp.array(dtype=float)  # all levels, row-major (entries, F) each
    row_offsets: wp.array(dtype=int)  # first row of each level
    entries: wp.array(dtype=int)
    res: wp.array(dtype=int)
    scale: wp.array(dtype=float)
    dense: wp.array(dtype=int)
    n_levels: int
    n_features: int


@wp.struct
class MLP:
    w_in: wp.array2d(dtype=float)  # (WIDTH, n_in)
    w_hidden: wp.array3d(dtype=float)  # (n_hidden - 1, WIDTH, WIDTH)
    w_out: wp.array2d(dtype=float)  # (n_out, WIDTH)
    n_hidden: int


@wp.func
def corner_row_weight(grid: Grid, level: int, dims: int, c: wp.vec3i, fr: wp.vec3, k: int):
    v, w = corner_weight(dims, c, fr, k)
    row = vertex_index(v[0], v[1], v[2], dims, grid.res[level], grid.entries[level], grid.dense[level])
    return grid.row_offsets[level] + row, w


@wp.kernel
def fused_fwd(
    offset: int,
    positions: wp.array2d(dtype=float),
    grid: Grid,
    mlp: MLP,
    save: int,
    encoded: wp.array2d(dtype=float),
    acts: wp.array3d(dtype=float),
    out: wp.array2d(dtype=float),
):
    n = wp.tid() + offset
    dims = positions.shape[1]
    F = grid.n_features
    x = vec_w()
    for level in range(grid.n_levels):
        c, fr = cell_of(positions, n, dims, grid.scale[level])
        for k in range(1 << dims):
            row, w = corner_row_weight(grid, level, dims, c, fr, k)
            for f in range(F):
                x[level * F + f] = x[level * F + f] + w * grid.tables[row * F + f]
    n_in = grid.n_levels * F
    if save != 0:
        for i in range(n_in):
            encoded[n, i] = x[i]
    h = vec_w()
    for j in range(WIDTH):
        acc = float(0.0)
        for i in range(n_in):
            acc += mlp.w_in[j, i] * x[i]
        h[j] = wp.max(acc, 0.0)
    if save != 0:
        for j in range(WIDTH):
            acts[n, 0, j] = h[j]
    for layer in range(mlp.n_hidden - 1):
        g = vec_w()
        for j in range(WIDTH):
            acc = float(0.0)
            for i in range(WIDTH):
                acc += mlp.w_hidden[layer, j, i] * h[i]
            g[j] = wp.max(acc, 0.0)
        h = g
        if save != 0:
            for j in range(WIDTH):
                acts[n, layer + 1, j] = h[j]
    for o in range(mlp.w_out.shape[0]):
        acc = float(0.0)
        for j in range(WIDTH):
            acc += mlp.w_out[o, j] * h[j]
        out[n, o] = acc


@wp.kernel
def fused_bwd(
    offset: int,
    shard: int,
    positions: wp.array2d(dtype=float),
    grid: Grid,
    mlp: MLP,
    acts: wp.array3d(dtype=float),
    v_out: wp.array2d(dtype=float),
    deltas: wp.array3d(dtype=float),  # (N, n_hidden, WIDTH) pre-activation gradients
    v_tables: wp.array2d(dtype=float),  # (shards, total rows * F)
):
    n = wp.tid() + offset
    dims = positions.shape[1]
    F = grid.n_features
    last = mlp.n_hidden - 1
    d = vec_w()
    for j in range(WIDTH):
        acc = float(0.0)
        for o in range(mlp.w_out.shape[0]):
            acc += mlp.w_out[o, j] * v_out[n, o]
        if acts[n, last, j] > 0.0:
            d[j] = acc
        deltas[n, last, j] = d[j]
    for step in range(last):
        layer = last - step  # delta of `layer` -> delta of `layer - 1`
        g = vec_w()
        for i in range(WIDTH):
            acc = float(0.0)
            for j in range(WIDTH):
                acc += mlp.w_hidden[layer - 1, j, i] * d[j]
            if acts[n, layer - 1, i] > 0.0:
                g[i] = acc
            deltas[n, layer - 1, i] = g[i]
        d = g
    n_in = grid.n_levels * F
    v_x = vec_w()
    for i in range(n_in):
        acc = float(0.0)
        for j in range(WIDTH):
            acc += mlp.w_in[j, i] * d[j]
        v_x[i] = acc
    for level in range(grid.n_levels):
        c, fr = cell_of(positions, n, dims, grid.scale[level])
        for k in range(1 << dims):
            row, w = corner_row_weight(grid, level, dims, c, fr, k)
            for f in range(F):
                wp.atomic_add(v_tables, shard, row * F + f, w * v_x[level * F + f])


def _layout_tensors(enc: HashGridEncoding, device) -> list[torch.Tensor]:
    """Per-level row offsets, entries, resolutions, scales and dense flags on `device`: built once
    per encoding and device (the layout never changes), not on every forward and backward."""
    cache = enc.layout_tensor_cache
    key = str(device)
    if key not in cache:
        layout = enc.layout
        rows = [entries for _, _, entries, _ in layout]
        cache[key] = [
            torch.tensor([0] + rows[:-1], dtype=torch.int64).cumsum(0).to(device=device, dtype=torch.int32),
            torch.tensor(rows, dtype=torch.int32, device=device),
            torch.tensor([r for _, r, _, _ in layout], dtype=torch.int32, device=device),
            torch.tensor([s for s, _, _, _ in layout], dtype=torch.float32, device=device),
            torch.tensor([int(d) for _, _, _, d in layout], dtype=torch.int32, device=device),
        ]
    return cache[key]


def _grid_struct(enc: HashGridEncoding, flat_tables: torch.Tensor) -> Grid:
    g = Grid()
    A = warp_runtime.array
    g.tables = A(flat_tables)
    g.row_offsets, g.entries, g.res, g.scale, g.dense = (A(t) for t in _layout_tensors(enc, flat_tables.device))
    g.n_levels, g.n_features = enc.n_levels, enc.n_features_per_level
    return g


def _mlp_struct(w_in, w_hidden, w_out) -> tuple[MLP, torch.Tensor]:
    m = MLP()
    A = warp_runtime.array
    hidden = w_hidden if w_hidden.shape[0] > 0 else w_hidden.new_zeros(1, WIDTH, WIDTH)  # unread placeholder
    m.w_in, m.w_hidden, m.w_out = A(w_in, dims=2), A(hidden, dims=3), A(w_out, dims=2)
    m.n_hidden = w_hidden.shape[0] + 1
    return m, hidden


class _FusedHashMLP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, positions, enc, flat_tables, w_in, w_hidden, w_out):
        N, dev = positions.shape[0], positions.device
        n_hidden = w_hidden.shape[0] + 1
        save = any(ctx.needs_input_grad[2:])
        encoded = torch.empty((N if save else 1, w_in.shape[1]), dtype=torch.float32, device=dev)
        acts = torch.empty((N if save else 1, n_hidden, WIDTH), dtype=torch.float32, device=dev)
        out = torch.empty((N, w_out.shape[0]), dtype=torch.float32, device=dev)
        grid, (mlp, _hidden) = _grid_struct(enc, flat_tables), _mlp_struct(w_in, w_hidden, w_out)
        A = warp_runtime.array
        warp_runtime.launch(
            fused_fwd,
            N,
            [A(positions, dims=2), grid, mlp, int(save)],
            [A(encoded, dims=2), A(acts, dims=3), A(out, dims=2)],
            device=dev,
            grain=256,
        )
        ctx.enc = enc
        ctx.save_for_backward(positions, flat_tables, w_in, w_hidden, w_out, encoded, acts)
        return out

    @staticmethod
    def backward(ctx, v_out):
        positions, flat_tables, w_in, w_hidden, w_out, encoded, acts = ctx.saved_tensors
        N, dev = positions.shape[0], positions.device
        v_out = v_out.contiguous().float()
        n_hidden = w_hidden.shape[0] + 1
        deltas = torch.empty((N, n_hidden, WIDTH), dtype=torch.float32, device=dev)
        shards = warp_runtime.num_shards(dev)
        v_tables = torch.zeros((shards, flat_tables.numel()), dtype=torch.float32, device=dev)
        grid, (mlp, _hidden) = _grid_struct(ctx.enc, flat_tables), _mlp_struct(w_in, w_hidden, w_out)
        A = warp_runtime.array
        warp_runtime.launch(
            fused_bwd,
            N,
            [A(positions, dims=2), grid, mlp, A(acts, dims=3), A(v_out, dims=2)],
            [A(deltas, dims=3), A(v_tables, dims=2)],
            device=dev,
            sharded=True,
            grain=256,
        )
        v_w_out = v_out.t() @ acts[:, -1]
        v_w_hidden = torch.zeros_like(w_hidden)
        for k in range(n_hidden - 1):
            v_w_hidden[k] = deltas[:, k + 1].t() @ acts[:, k]
        v_w_in = deltas[:, 0].t() @ encoded
        return None, None, v_tables.sum(0) if shards > 1 else v_tables[0], v_w_in, v_w_hidden, v_w_out


class HashGridMLP(torch.nn.Module):
    """`HashGridEncoding` followed by a ReLU MLP of width 64 (`n_hidden_layers` hidden layers, no
    biases, linear output). `encoding` is the usual module, so `.encoding.embeddings` are the hash
    tables; the weights are `w_in` (64, L*F), `w_hidden` (n_hidden_layers - 1, 64, 64), `w_out`.

    `fused`: True evaluates encoding + MLP in the fused Warp kernels; False runs the encoding kernel
    and the MLP as torch matrix products; None (default) picks fused on CUDA and unfused on the
    CPU, where Warp runs scalar code and torch's GEMMs are faster (bench/fields.py measures both).
    """

    def __init__(
        self,
        n_output_dims: int,
        n_hidden_layers: int = 1,
        generator: torch.Generator | None = None,
        fused: bool | None = None,
        **encoding,
    ):
        super().__init__()
        self.fused = fused
        if n_hidden_layers < 1:
            raise ValueError(f"n_hidden_layers: expected >= 1, got {n_hidden_layers}")
        self.encoding = HashGridEncoding(generator=generator, **encoding)
        n_in = self.encoding.n_output_dims
        if n_in > MAX_INPUT:
            raise ValueError(f"n_levels * n_features_per_level: at most {MAX_INPUT} for the fused MLP, got {n_in}")

        def init(shape, fan_in):  # Kaiming-uniform for ReLU
            bound = math.sqrt(6.0 / fan_in)
            return torch.nn.Parameter((torch.rand(shape, generator=generator) * 2 - 1) * bound)

        self.w_in = init((WIDTH, n_in), n_in)
        self.w_hidden = init((n_hidden_layers - 1, WIDTH, WIDTH), WIDTH)
        self.w_out = init((n_output_dims, WIDTH), WIDTH)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        if positions.dim() != 2 or positions.shape[1] != self.encoding.n_input_dims:
            raise ValueError(
                f"positions: expected shape (N, {self.encoding.n_input_dims}), got {tuple(positions.shape)}"
            )
        fused = self.fused if self.fused is not None else positions.device.type == "cuda"
        if not fused:
            return mlp_torch(self.encoding(positions), self.w_in, self.w_hidden, self.w_out)
        flat = torch.cat([t.reshape(-1) for t in self.encoding.embeddings])
        return _FusedHashMLP.apply(
            positions.detach().float().contiguous(), self.encoding, flat, self.w_in, self.w_hidden, self.w_out
        )

    def forward_torch(self, positions: torch.Tensor) -> torch.Tensor:
        """The same network in plain torch (the tests' oracle and the benchmark's peer)."""
        return mlp_torch(
            hash_encode_torch(positions.clamp(0, 1), list(self.encoding.embeddings), self.encoding.layout),
            self.w_in,
            self.w_hidden,
            self.w_out,
        )


def mlp_torch(x: torch.Tensor, w_in: torch.Tensor, w_hidden: torch.Tensor, w_out: torch.Tensor) -> torch.Tensor:
    h = torch.relu(x @ w_in.t())
    for k in range(w_hidden.shape[0]):
        h = torch.relu(h @ w_hidden[k].t())
    return h @ w_out.t()
