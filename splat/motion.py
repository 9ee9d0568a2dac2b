"""Shared motion bases: 3D Gaussians that move over time by a few rigid motions they share.

A scene of this kind ("motion" model) holds ordinary 3D Gaussians in a canonical pose, a row of
blend logits per Gaussian (`splats["motion"]`, (N, K)), and K rigid motions over time (`bases`:
rotations (K, T, 4) wxyz and translations (K, T, 3) at T knots evenly spaced over [0, 1], linear
in between, each about its own pivot: `pivots` (K, 3)). At time t a Gaussian moves by the
softmax-weighted blend of the K motions:

    x(t) = sum_k w_k (R_k(t) (x - p_k) + p_k + T_k(t)),   q(t) = normalize(sum_k w_k q_k(t)) * q

(a motion turns about the centre of the Gaussians it moves, so that turning and shifting are
learned apart.)
(Shape of Motion's SE(3) bases, Wang et al. 2024). Motion is learned once for the whole scene,
so what one view at one instant shows about it holds at the next: with one camera per instant
(D-NeRF), Gaussians that each carry their own motion (4D XYZT) reproduce the training frames and
smear the others. Deformed Gaussians render with the 3D rasterizer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from splat.rotation import quat_multiply, quat_to_rotmat

MOTION_KEY = "motion"  # the per-Gaussian blend logits among the splats
BLEND_SHARPNESS = 3.0  # initial blend: a Gaussian's weights fall off over 1/3 of the spacing of the centres


def identity_bases(num_bases: int, num_knots: int) -> dict[str, torch.Tensor]:
    """K motions that stay at rest: identity rotations and zero translations at every knot."""
    rotations = torch.zeros(num_bases, num_knots, 4)
    rotations[..., 0] = 1.0
    return {
        "rotations": rotations,
        "translations": torch.zeros(num_bases, num_knots, 3),
        "pivots": torch.zeros(num_bases, 3),
    }


def bases_at(bases: dict[str, torch.Tensor], time: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The K motions at `time` in [0, 1]: unit quaternions (K, 4) and translations (K, 3), linear
    between the two nearest knots (the quaternions renormalised)."""
    rotations, translations = bases["rotations"], bases["translations"]
    knots = rotations.shape[1]
    u = min(max(float(time), 0.0), 1.0) * (knots - 1)
    i = min(int(u), knots - 2) if knots > 1 else 0
    f = u - i if knots > 1 else 0.0
    j = min(i + 1, knots - 1)
    q = rotations[:, i] * (1.0 - f) + rotations[:, j] * f
    return F.normalize(q, dim=-1), translations[:, i] * (1.0 - f) + translations[:, j] * f


def deform(splats: dict[str, torch.Tensor], bases: dict[str, torch.Tensor], time: float) -> dict[str, torch.Tensor]:
    """The 3D Gaussians at `time`: `splats` with means and quats moved (differentiable in the
    splats and the bases); the blend logits are left out."""
    q_k, t_k = bases_at(bases, time)
    weights = torch.softmax(splats[MOTION_KEY], dim=-1)  # (N, K)
    R = quat_to_rotmat(q_k)  # (K, 3, 3)
    pivots = bases["pivots"].to(q_k)
    shift = t_k + pivots - torch.einsum("kij,kj->ki", R, pivots)  # R_k (x - p_k) + p_k + T_k = R_k x + shift_k
    # sum_k w_k (R_k x + shift_k) = (sum_k w_k R_k) x + sum_k w_k shift_k: blend the (K, 3, 4) motions, apply one
    motions = torch.cat([R, shift[:, :, None]], dim=2).reshape(-1, 12)
    blended = (weights @ motions).reshape(-1, 3, 4)
    moved = torch.einsum("nij,nj->ni", blended[:, :, :3], splats["means"]) + blended[:, :, 3]
    rotation = F.normalize(weights @ q_k, dim=-1)
    out = {k: v for k, v in splats.items() if k != MOTION_KEY}
    out["means"] = moved
    out["quats"] = quat_multiply(rotation, F.normalize(splats["quats"], dim=-1))
    return out


def bases_to_original(bases: dict[str, torch.Tensor], scale: float, center: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same motions for Gaussians moved from a normalised frame (x_n = scale (x - center)) back
    to the original: rotations unchanged, translations / scale, pivots p' = p / scale + center."""
    pivots = bases["pivots"]
    return {
        "rotations": bases["rotations"].clone(),
        "translations": bases["translations"] / scale,
        "pivots": (pivots.double() / scale + center.double()).to(pivots.dtype),
    }


def smoothness(bases: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean squared second difference of the knots over time (rotations and translations): motion
    that accelerates only where the images ask it to."""
    total = bases["rotations"].new_zeros(())
    for v in (bases["rotations"], bases["translations"]):
        if v.shape[1] >= 3:
            total = total + (v[:, 2:] - 2 * v[:, 1:-1] + v[:, :-2]).pow(2).sum(-1).mean()
    return total


def initial_blend(
    points: torch.Tensor,
    num_bases: int,
    generator: torch.Generator,
    among: torch.Tensor | None = None,
    iterations: int = 10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend logits (N, K) that give each of `points` to the motions of its neighbourhood, and the
    motions' pivots (K, 3): K-means centres of `points` (of those `among`, a mask, when given;
    seeded far apart), logits -d^2 / (2 s^2) with s the median distance between nearest centres (a
    Gaussian is mostly moved by its nearest centre's motion, and neighbours by the same ones;
    the fall-off is BLEND_SHARPNESS times steeper)."""
    everyone = points
    if among is not None and int(among.sum()) >= num_bases:  # centres from these points only (the seen ones)
        points = points[among]
    n = points.shape[0]
    k = min(num_bases, n)
    # farthest-point seeds (from a random first one), so that no cluster of points starts without a centre
    chosen = [int(torch.randint(n, (1,), generator=generator))]
    nearest_d = torch.cdist(points, points[chosen[-1]][None])[:, 0]
    for _ in range(k - 1):
        chosen.append(int(nearest_d.argmax()))
        nearest_d = torch.minimum(nearest_d, torch.cdist(points, points[chosen[-1]][None])[:, 0])
    centres = points[chosen].clone()
    for _ in range(iterations):
        nearest = torch.cdist(points, centres).argmin(dim=1)
        total = torch.zeros_like(centres).index_add(0, nearest, points)
        count = torch.zeros(k).index_add(0, nearest, torch.ones(n))
        centres = torch.where(count[:, None] > 0, total / count.clamp(min=1)[:, None], centres)
    between = torch.cdist(centres, centres) + torch.eye(k) * 1e9
    spread = between.min(dim=1).values.median().clamp(min=1e-6) if k > 1 else torch.tensor(1.0)
    logits = (-torch.cdist(everyone, centres).pow(2) / (2 * (spread / BLEND_SHARPNESS) ** 2)).clamp(min=-30.0)
    if k < num_bases:
        logits = torch.cat([logits, torch.full((everyone.shape[0], num_bases - k), -30.0)], dim=1)
        centres = torch.cat([centres, centres[:1].expand(num_bases - k, 3)])
    return logits, centres
