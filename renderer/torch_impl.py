"""Pure-torch twins of the Warp stages, any dtype (float64 in tests), differentiable by autograd.

They follow the kernels' rules exactly and serve as their test oracles (the projection and SH twins
are themselves checked against gsplat's torch reference functions), and `rasterize_to_pixels_torch`
is the vectorised pure-torch rasterizer the benchmark measures against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from splat.rotation import left_isoclinic, quat_to_rotmat, right_isoclinic, rotation_4d  # noqa: F401 - twins

from .constants import ALPHA_MAX, ALPHA_THRESHOLD, MAX_EXTENT_SIGMAS, SH_C0, TRANSMITTANCE_MIN  # noqa: F401

# ---------------------------------------------------------------------------------------------
# Projection
# ---------------------------------------------------------------------------------------------


def covar_from_quat_scale(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    M = quat_to_rotmat(quats) * scales[..., None, :]
    return M @ M.transpose(-1, -2)


def covar_from_triu(c: torch.Tensor) -> torch.Tensor:
    xx, xy, xz, yy, yz, zz = c.unbind(-1)
    return torch.stack([xx, xy, xz, xy, yy, yz, xz, yz, zz], dim=-1).reshape(c.shape[:-1] + (3, 3))


def project_gaussians(
    means,
    quats,
    scales,
    viewmats,
    Ks,
    width,
    height,
    covars=None,
    opacities=None,
    eps2d=0.3,
    near_plane=0.01,
    far_plane=1e10,
    radius_clip=0.0,
    calc_compensations=False,
    camera_model="pinhole",
):
    """Twin of `projection.fully_fused_projection` (covars given as (N, 6) upper triangles)."""
    cov = covar_from_triu(covars) if covars is not None else covar_from_quat_scale(quats, scales)
    R = viewmats[:, :3, :3]
    t = viewmats[:, :3, 3]
    p = torch.einsum("cij,nj->cni", R, means) + t[:, None, :]  # (C, N, 3)
    cov_c = R[:, None] @ cov[None] @ R.transpose(1, 2)[:, None]  # (C, N, 3, 3)
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    x, y, z = p.unbind(-1)
    zeros = torch.zeros_like(x)
    if camera_model == "ortho":
        means2d = torch.stack([fx * x + cx, fy * y + cy], dim=-1)
        J = torch.stack([fx.expand_as(x), zeros, zeros, zeros, fy.expand_as(x), zeros], dim=-1)
    else:
        mx = 0.3 * (0.5 * width / fx)
        my = 0.3 * (0.5 * height / fy)
        tx = z * torch.clamp(x / z, min=-(cx / fx + mx), max=(width - cx) / fx + mx)
        ty = z * torch.clamp(y / z, min=-(cy / fy + my), max=(height - cy) / fy + my)
        means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)
        J = torch.stack([fx / z, zeros, -fx * tx / z**2, zeros, fy / z, -fy * ty / z**2], dim=-1)
    J = J.reshape(J.shape[:-1] + (2, 3))
    cov2d = J @ cov_c @ J.transpose(-1, -2)

    a, c = cov2d[..., 0, 0], cov2d[..., 1, 1]
    b = 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0])
    det_orig = a * c - b * b
    a_b, c_b = a + eps2d, c + eps2d
    det = a_b * c_b - b * b
    compensations = torch.sqrt(torch.clamp(det_orig / det, min=0.0))
    conics = torch.stack([c_b / det, -b / det, a_b / det], dim=-1)

    valid = (z >= near_plane) & (z <= far_plane) & (det > 0)
    with torch.no_grad():
        extent = torch.full_like(z, MAX_EXTENT_SIGMAS)
        if opacities is not None:
            op = opacities[None, :] * (compensations if calc_compensations else 1.0)
            valid &= op >= ALPHA_THRESHOLD
            extent = torch.clamp(
                torch.sqrt(2.0 * torch.log(op.clamp(min=1e-30) / ALPHA_THRESHOLD)), max=MAX_EXTENT_SIGMAS
            )
        rx = torch.ceil(extent * torch.sqrt(a_b.clamp(min=0)))
        ry = torch.ceil(extent * torch.sqrt(c_b.clamp(min=0)))
        valid &= ~((rx <= radius_clip) & (ry <= radius_clip))
        u, v = means2d[..., 0], means2d[..., 1]
        valid &= (u + rx > 0) & (u - rx < width) & (v + ry > 0) & (v - ry < height)
        radii = torch.where(valid[..., None], torch.stack([rx, ry], dim=-1), 0).int()

    def keep(t):
        mask = valid.reshape(valid.shape + (1,) * (t.dim() - valid.dim()))
        return torch.where(mask, t, torch.zeros_like(t))

    return radii, keep(means2d), keep(z), keep(conics), (keep(compensations) if calc_compensations else None)


# ---------------------------------------------------------------------------------------------
# Spherical harmonics
# ---------------------------------------------------------------------------------------------

SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def sh_basis(degree: int, d: torch.Tensor) -> torch.Tensor:
    x, y, z = d.unbind(-1)
    bases = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        bases += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        bases += [
            SH_C2[0] * x * y,
            SH_C2[1] * y * z,
            SH_C2[2] * (2 * zz - xx - yy),
            SH_C2[3] * x * z,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        bases += [
            SH_C3[0] * y * (3 * xx - yy),
            SH_C3[1] * x * y * z,
            SH_C3[2] * y * (4 * zz - xx - yy),
            SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            SH_C3[4] * x * (4 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(bases, dim=-1)


def sh_colors(degree: int, means: torch.Tensor, campos: torch.Tensor, coeffs: torch.Tensor, radii: torch.Tensor):
    """Twin of `spherical_harmonics.sh_colors`: (C, N, 3)."""
    C, N = campos.shape[0], means.shape[0]
    d = F.normalize(means[None, :, :] - campos[:, None, :], dim=-1)  # (C, N, 3)
    K = (degree + 1) ** 2
    sh = coeffs[..., :K, :]
    if sh.dim() == 3:
        sh = sh[None].expand(C, N, K, 3)
    colors = torch.clamp_min((sh_basis(degree, d)[..., None] * sh).sum(-2) + 0.5, 0.0)
    visible = (radii > 0).any(dim=-1, keepdim=True)
    return torch.where(visible, colors, torch.zeros_like(colors))


# ---------------------------------------------------------------------------------------------
# Tile binning
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def isect_tiles(means2d, radii, depths, tile_size, tile_width, tile_height):
    """Twin of `binning.isect_tiles` (same keys, same order)."""
    C, N = depths.shape
    m = means2d.reshape(-1, 2).float()
    r = radii.reshape(-1, 2).float()
    x0 = torch.floor((m[:, 0] - r[:, 0]) / tile_size).clamp(0, tile_width).long()
    y0 = torch.floor((m[:, 1] - r[:, 1]) / tile_size).clamp(0, tile_height).long()
    x1 = torch.ceil((m[:, 0] + r[:, 0]) / tile_size).clamp(0, tile_width).long()
    y1 = torch.ceil((m[:, 1] + r[:, 1]) / tile_size).clamp(0, tile_height).long()
    counts = (x1 - x0) * (y1 - y0) * (radii.reshape(-1, 2) > 0).all(-1)
    ids = torch.repeat_interleave(torch.arange(C * N, device=m.device), counts)
    first = torch.cumsum(counts, 0) - counts
    k = torch.arange(ids.shape[0], device=m.device) - first[ids]
    bw = (x1 - x0)[ids]
    tx = x0[ids] + k % bw.clamp(min=1)
    ty = y0[ids] + k // bw.clamp(min=1)
    tile = (ids // N) * tile_width * tile_height + ty * tile_width + tx
    bits = depths.reshape(-1).float().view(torch.int32)[ids].long() & 0xFFFFFFFF
    depth_key = torch.where(bits >= 2**31, (~bits) & 0xFFFFFFFF, bits | 2**31)
    keys = (tile << 32) | depth_key
    keys, order = torch.sort(keys, stable=True)
    return counts.view(C, N).int(), keys, ids[order].int()


@torch.no_grad()
def isect_offset_encode(isect_ids, n_cameras, tile_width, tile_height):
    num_tiles = n_cameras * tile_width * tile_height
    tiles = isect_ids >> 32
    offsets = torch.searchsorted(tiles, torch.arange(num_tiles, device=isect_ids.device))
    return offsets.int().view(n_cameras, tile_height, tile_width)


# ---------------------------------------------------------------------------------------------
# Compositing: vectorised over tiles, pixels and chunks of each tile's depth-sorted list
# ---------------------------------------------------------------------------------------------


def _composite_tiles(px, py, ids, valid, means2d, conics, opacities, colors, chunk):
    """Front-to-back compositing of B tiles of P pixels over their (B, L) sorted Gaussian ids."""
    B, P = px.shape
    L = ids.shape[1]
    T = torch.ones((B, P), dtype=means2d.dtype, device=means2d.device)
    done = torch.zeros((B, P), dtype=torch.bool, device=means2d.device)
    acc = torch.zeros((B, P, colors.shape[-1]), dtype=colors.dtype, device=colors.device)
    for c0 in range(0, L, chunk):
        g = ids[:, c0 : c0 + chunk]
        ok = valid[:, c0 : c0 + chunk]
        m, co, op, col = means2d[g], conics[g], opacities[g], colors[g]
        dx = m[:, None, :, 0] - px[:, :, None]
        dy = m[:, None, :, 1] - py[:, :, None]
        power = 0.5 * (co[:, None, :, 0] * dx * dx + co[:, None, :, 2] * dy * dy) + co[:, None, :, 1] * dx * dy
        alpha = torch.clamp_max(op[:, None, :] * torch.exp(-power), ALPHA_MAX)
        keep = ok[:, None, :] & (power >= 0) & (alpha >= ALPHA_THRESHOLD) & ~done[:, :, None]
        alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
        survive = torch.cumprod(1 - alpha, dim=-1)
        # transmittance is non-increasing, so "blended" is True up to the first splat that would
        # take it to <= 1e-4 (which stops the pixel and is itself not blended)
        blended = T[:, :, None] * survive > TRANSMITTANCE_MIN
        alpha = torch.where(blended, alpha, torch.zeros_like(alpha))
        survive = torch.cumprod(1 - alpha, dim=-1)
        before = torch.cat([torch.ones_like(survive[..., :1]), survive[..., :-1]], dim=-1)
        acc = acc + torch.einsum("bpl,bld->bpd", alpha * before * T[:, :, None], col)
        T = T * survive[..., -1]
        done = done | ~blended[..., -1]
        if bool(done.all()):
            break
    return acc, T


def rasterize_to_pixels_torch(
    means2d,
    conics,
    colors,
    opacities,
    width,
    height,
    tile_size,
    isect_offsets,
    flatten_ids,
    backgrounds=None,
    tiles_per_batch=32,
    chunk=128,
):
    """Twin of `compositing.rasterize_to_pixels`, vectorised in torch.

    Tiles with similar list lengths are batched (padding to the batch's longest list); each
    batch walks its lists in chunks and stops once every pixel is saturated. Under autograd each
    batch is checkpointed (recomputed in backward), which keeps memory bounded.
    """
    C, N = means2d.shape[:2]
    D = colors.shape[-1]
    th, tw = isect_offsets.shape[1:]
    dev = means2d.device
    n_isects = flatten_ids.shape[0]
    m_f, c_f, o_f = means2d.reshape(-1, 2), conics.reshape(-1, 3), opacities.reshape(-1)
    col_f = (colors if colors.dim() == 3 else colors[None].expand(C, N, D)).reshape(-1, D)
    starts = isect_offsets.reshape(-1).long()
    ends = torch.cat([starts[1:], torch.tensor([n_isects], device=dev)])
    counts = ends - starts
    local = torch.arange(tile_size * tile_size, device=dev)
    lx, ly = (local % tile_size).to(means2d.dtype), (local // tile_size).to(means2d.dtype)

    n_tiles = C * th * tw
    out = torch.zeros((n_tiles, tile_size * tile_size, D), dtype=col_f.dtype, device=dev)
    T_out = torch.ones((n_tiles, tile_size * tile_size), dtype=means2d.dtype, device=dev)
    tiles = torch.nonzero(counts > 0)[:, 0]
    tiles = tiles[torch.argsort(counts[tiles])]
    use_ckpt = torch.is_grad_enabled() and any(t.requires_grad for t in (m_f, c_f, o_f, col_f))
    results, order = [], []
    for b0 in range(0, tiles.shape[0], tiles_per_batch):
        batch = tiles[b0 : b0 + tiles_per_batch]
        L = int(counts[batch].max())
        pos = starts[batch, None] + torch.arange(L, device=dev)[None]
        valid = pos < ends[batch, None]
        ids = flatten_ids.long()[pos.clamp(max=max(n_isects - 1, 0))]
        t_in_cam = batch % (th * tw)
        px = ((t_in_cam % tw) * tile_size)[:, None] + lx[None] + 0.5
        py = ((t_in_cam // tw) * tile_size)[:, None] + ly[None] + 0.5
        args = (px, py, ids, valid, m_f, c_f, o_f, col_f, chunk)
        results.append(
            checkpoint(_composite_tiles, *args, use_reentrant=False) if use_ckpt else _composite_tiles(*args)
        )
        order.append(batch)
    if results:
        idx = torch.cat(order)
        out = out.index_copy(0, idx, torch.cat([r[0] for r in results]))
        T_out = T_out.index_copy(0, idx, torch.cat([r[1] for r in results]))

    def to_image(t):
        t = t.reshape(C, th, tw, tile_size, tile_size, -1).permute(0, 1, 3, 2, 4, 5)
        return t.reshape(C, th * tile_size, tw * tile_size, -1)[:, :height, :width]

    render = to_image(out)
    T_img = to_image(T_out[..., None])
    if backgrounds is not None:
        render = render + T_img * backgrounds[:, None, None, :]
    return render, 1 - T_img


# ---------------------------------------------------------------------------------------------
# The whole pipeline in torch (the benchmark's peer)
# ---------------------------------------------------------------------------------------------


def rasterize_torch(
    means,
    quats,
    scales,
    opacities,
    colors,
    viewmats,
    Ks,
    width,
    height,
    tile_size=16,
    backgrounds=None,
    **projection_kwargs,
):
    """Pure-torch counterpart of `splat.rasterize` for plain features (no SH, RGB mode)."""
    C, N = viewmats.shape[0], means.shape[0]
    radii, means2d, depths, conics, _ = project_gaussians(
        means, quats, scales, viewmats, Ks, width, height, opacities=opacities, **projection_kwargs
    )
    tile_width = -(-width // tile_size)
    tile_height = -(-height // tile_size)
    _, isect_ids, flatten_ids = isect_tiles(means2d, radii, depths, tile_size, tile_width, tile_height)
    offsets = isect_offset_encode(isect_ids, C, tile_width, tile_height)
    return rasterize_to_pixels_torch(
        means2d,
        conics,
        colors,
        opacities[None].expand(C, N),
        width,
        height,
        tile_size,
        offsets,
        flatten_ids,
        backgrounds=backgrounds,
    )


# ---------------------------------------------------------------------------------------------
# 4D slicing (twins of renderer/slicing.py)
# ---------------------------------------------------------------------------------------------


def covariance_4d(scales: torch.Tensor, q_left: torch.Tensor, q_right: torch.Tensor, min_time_var: float = 1e-12):
    """(N, 4) scales, (N, 4) left/right quaternions -> Sigma3 (N, 3, 3), velocity (N, 3), W (N,)."""
    M = rotation_4d(q_left, q_right) * scales[:, None, :]
    S = M @ M.transpose(-1, -2)
    W = S[:, 3, 3].clamp(min=min_time_var)
    V = S[:, :3, 3]
    covars3 = S[:, :3, :3] - V[:, :, None] * V[:, None, :] / W[:, None, None]
    return covars3, V / W[:, None], W


def slice_at_times(times: torch.Tensor, means: torch.Tensor, velocities: torch.Tensor, time_vars: torch.Tensor):
    """(T,) times -> positions (T, N, 3) and temporal weights (T, N)."""
    dt = times[:, None] - means[None, :, 3]
    means3 = means[None, :, :3] + velocities[None] * dt[..., None]
    return means3, torch.exp(-0.5 * dt * dt / time_vars[None])
