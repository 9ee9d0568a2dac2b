"""Distributed rasterization on torch.distributed (the design of "On Scaling Up 3D Gaussian
Splatting Training", Zhao et al. 2024, as in gsplat's `rasterization(distributed=True)`).

Every rank owns a shard of the Gaussians and a batch of C cameras (the same C on every rank):

1. the cameras are all-gathered, so every rank knows all R x C cameras of the step;
2. each rank projects its own Gaussians into all of them (`rasterization.project`);
3. for each destination rank, the rows of the Gaussians that reach at least one of that rank's
   cameras are packed (C, n, F) and exchanged with one differentiable all-to-all;
4. each rank bins and composites its own C images from every Gaussian that reaches them
   (`rasterization.composite`), in global Gaussian order (owner rank, then local index).

Backward runs the same all-to-all in reverse, so each gradient lands on the owner of its Gaussian;
Gaussian gradients are never all-reduced. Invisible Gaussians are not sent: they have no
intersection with the destination's tiles, so the images and gradients are exactly those of a
single process rendering all Gaussians into the same cameras.

Bytes moved per step (forward; backward moves the same amount of gradients):
    sum over ordered pairs (s -> d, s != d) of  C * n_{s->d} * 4 * F,   F = 2 + 2 + 1 + 3 + 1 + D
(radii, means2d, depth, conic, opacity, D feature channels; float32), where n_{s->d} <= N_s is the
number of rank s's Gaussians visible in any of rank d's cameras; see `exchange_bytes_bound`.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from .rasterization import _TRIU, _f32, composite, project
from .validation import CameraModel, RasterizeMode, RenderMode, checks_rasterize_inputs

# Off-rank bytes handed to all_to_all since the last reset, forward and backward (for the benchmark).
EXCHANGE_STATS = {"forward_bytes": 0, "backward_bytes": 0, "calls": 0}


def reset_exchange_stats() -> None:
    for k in EXCHANGE_STATS:
        EXCHANGE_STATS[k] = 0


def _off_rank_bytes(counts: list[int], row_bytes: int, rank: int) -> int:
    return sum(n for r, n in enumerate(counts) if r != rank) * row_bytes


def all_to_all_rows(x: torch.Tensor, send_counts: list[int], recv_counts: list[int], group=None) -> torch.Tensor:
    """Send rows `x[sum(send_counts[:r]) : ...]` to rank r and receive `recv_counts[r]` rows from
    each rank r (dim 0; trailing dims equal everywhere). Not differentiable (see `AllToAll`)."""
    out = x.new_empty((sum(recv_counts), *x.shape[1:]))
    dist.all_to_all_single(out, x.contiguous(), list(recv_counts), list(send_counts), group=group)
    return out


class AllToAll(torch.autograd.Function):
    """Differentiable `all_to_all_rows`: the backward pass sends each gradient row back to the rank
    that sent the row (the same collective with the counts swapped)."""

    @staticmethod
    def forward(ctx, x, send_counts, recv_counts, group):
        ctx.counts, ctx.group = (list(send_counts), list(recv_counts)), group
        rank = dist.get_rank(group)
        row = x[0].numel() * x.element_size() if x.dim() > 1 else x.element_size()
        EXCHANGE_STATS["forward_bytes"] += _off_rank_bytes(send_counts, row, rank)
        EXCHANGE_STATS["calls"] += 1
        return all_to_all_rows(x, send_counts, recv_counts, group)

    @staticmethod
    def backward(ctx, grad):
        send_counts, recv_counts = ctx.counts
        rank = dist.get_rank(ctx.group)
        row = grad[0].numel() * grad.element_size() if grad.dim() > 1 else grad.element_size()
        EXCHANGE_STATS["backward_bytes"] += _off_rank_bytes(recv_counts, row, rank)
        return all_to_all_rows(grad, recv_counts, send_counts, ctx.group), None, None, None


def all_gather_cat(x: torch.Tensor, group=None) -> torch.Tensor:
    """Concatenate equally shaped tensors of all ranks along dim 0 (rank order); not differentiable."""
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.cat(parts)


def exchange_bytes_bound(n_gaussians: int, cameras_per_rank: int, ranks: int, feature_dim: int = 3) -> int:
    """Forward bytes of one step when every camera sees every Gaussian (no visibility culling):
    (R - 1) * C * N * 4 * F. Multiply by the visible fraction for a real scene; backward is equal."""
    return (ranks - 1) * cameras_per_rank * n_gaussians * 4 * (9 + feature_dim)


@checks_rasterize_inputs
def rasterize_distributed(
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
    radius_clip: float = 0.0,
    group=None,
):
    """`rasterize` over a process group: this rank's Gaussian shard (N_local, ...) and this rank's
    C cameras (viewmats (C, 4, 4), Ks (C, 3, 3), backgrounds (C, D)); every rank must call it with
    the same C (the collectives' sizes depend on it), width, height and options. Returns this
    rank's images as `rasterize` does.

    meta adds: "shard_means2d" (R*C, N_local, 2, the owner's projection into all cameras of the
    step; `.retain_grad()` it for densification statistics), "shard_radii" (R*C, N_local, 2),
    "n_cameras_world" (R*C), "n_gaussians_world" (sum of N_local) and "sent_rows" (Gaussians sent
    to each rank). Per-pixel absgrad is not available (it would live on the destination rank).
    """
    world = dist.get_world_size(group)
    C, N = viewmats.shape[0], means.shape[0]
    device = means.device
    # one all-gather for the step's cameras and the shard sizes: per camera [N_local, viewmat, K] in
    # float64 (exact for float32 matrices and for counts below 2^53)
    mine = torch.cat(
        [
            torch.full((C, 1), float(N), dtype=torch.float64, device=device),
            viewmats.reshape(C, 16).double(),
            Ks.reshape(C, 9).double(),
        ],
        dim=1,
    )
    cameras = all_gather_cat(mine, group)
    n_world = [int(n) for n in cameras[::C, 0].tolist()]
    all_viewmats = cameras[:, 1:17].reshape(-1, 4, 4).float()
    all_Ks = cameras[:, 17:26].reshape(-1, 3, 3).float()
    means, opacities = _f32(means), _f32(opacities)
    if covars is not None:
        covars6, quats, scales = _f32(covars[:, _TRIU[0], _TRIU[1]]), None, None
    else:
        covars6, quats, scales = None, _f32(quats), _f32(scales)
    shard = project(
        means,
        quats,
        scales,
        covars6,
        opacities,
        colors,
        all_viewmats,
        all_Ks,
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

    # one float32 row per (camera, Gaussian): radii (as floats, exact below 2^24; no gradient), means2d,
    # depth, conic, opacity, features. Packing makes the exchange a single collective each way.
    features = shard["features"]
    if features is not None and features.dim() == 2:
        features = features[None].expand(all_viewmats.shape[0], N, features.shape[-1])
    columns = [
        shard["radii"].float(),
        shard["means2d"],
        shard["depths"][..., None],
        shard["conics"],
        shard["opacities"][..., None],
    ] + ([features] if features is not None else [])
    packed = torch.cat(columns, dim=-1)  # (R*C, N, F)
    F = packed.shape[-1]

    visible = (shard["radii"] > 0).all(dim=-1).reshape(world, C, N).any(dim=1)  # (R, N): reaches a camera of rank r
    ids = [visible[r].nonzero(as_tuple=True)[0] for r in range(world)]
    send_rows = [int(i.numel()) for i in ids]
    recv_rows = all_to_all_rows(
        torch.tensor(send_rows, dtype=torch.int64, device=device), [1] * world, [1] * world, group
    ).tolist()
    outgoing = torch.cat([packed[r * C : (r + 1) * C, ids[r]].reshape(-1, F) for r in range(world)])
    incoming = AllToAll.apply(outgoing, [C * n for n in send_rows], [C * n for n in recv_rows], group)
    M = sum(recv_rows)
    # (C, m_r, F) blocks of each source rank, side by side: (C, M, F) in global Gaussian order
    blocks = incoming.split([C * m for m in recv_rows])
    rows = torch.cat([b.reshape(C, m, F) for b, m in zip(blocks, recv_rows)], dim=1)
    if M == 0:  # nothing reaches these cameras: one invisible row (radius 0) keeps the stages' shapes non-empty
        rows = torch.cat([rows, rows.new_zeros(C, 1, F)], dim=1)

    received = {
        "radii": rows[..., 0:2].detach().round().to(torch.int32).contiguous(),
        "means2d": rows[..., 2:4],
        "depths": rows[..., 4],
        "conics": rows[..., 5:8],
        "opacities": rows[..., 8].contiguous(),
        "features": rows[..., 9:] if features is not None else None,
    }
    received["means2d"] = received["means2d"].contiguous()
    received["depths"] = received["depths"].contiguous()
    received["conics"] = received["conics"].contiguous()
    render_colors, render_alphas, meta = composite(
        received, width, height, render_mode, _f32(backgrounds), tile_size, absgrad=False
    )
    meta.update(
        {
            "shard_means2d": shard["means2d"],
            "shard_radii": shard["radii"],
            "n_cameras_world": world * C,
            "n_gaussians_world": sum(n_world),
            "sent_rows": send_rows,
            "received_rows": recv_rows,
        }
    )
    return render_colors, render_alphas, meta
