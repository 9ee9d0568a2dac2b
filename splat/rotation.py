"""Rotation maths, in torch (any dtype, batched, differentiable): wxyz quaternions to and from
3x3 matrices, and the 4D rotations of 4D Gaussians, R4 = L(q_l) R(q_r) with L and R the left- and
right-isoclinic 4x4 matrices of two unit quaternions (renderer/slicing.py; its Warp kernels have
their own copies of the matrices, which these are the float64 twins of).

`splat.camera.quat_to_rotmat` / `rotmat_to_quat` are the numpy forms of one rotation; the
renderer's Warp form of `quat_to_rotmat` is in renderer/gaussian_math.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# 3D: quaternions and matrices
# ---------------------------------------------------------------------------------------------


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) of wxyz quaternions (..., 4), normalised here."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )
    return R.reshape(quats.shape[:-1] + (3, 3))


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product of wxyz quaternions (broadcasting): the rotation b followed by a."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def rotmats_to_quats(R: torch.Tensor) -> torch.Tensor:
    """wxyz unit quaternions (N, 4), w >= 0, of rotation matrices (N, 3, 3) (Shepperd's method:
    pivot on the largest of w, x, y, z so it stays accurate near 180-degree rotations)."""
    m = R
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    cand = torch.stack(
        [
            torch.stack([1 + tr, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], -1),
            torch.stack(
                [
                    m[:, 2, 1] - m[:, 1, 2],
                    1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2],
                    m[:, 0, 1] + m[:, 1, 0],
                    m[:, 0, 2] + m[:, 2, 0],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[:, 0, 2] - m[:, 2, 0],
                    m[:, 0, 1] + m[:, 1, 0],
                    1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2],
                    m[:, 1, 2] + m[:, 2, 1],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[:, 1, 0] - m[:, 0, 1],
                    m[:, 0, 2] + m[:, 2, 0],
                    m[:, 1, 2] + m[:, 2, 1],
                    1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2],
                ],
                -1,
            ),
        ],
        1,
    )  # row k is 4 q_k q (so its k-th entry is 4 q_k^2)
    k = torch.stack([tr, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], -1).argmax(-1)
    q = F.normalize(cand[torch.arange(len(m)), k], dim=-1)
    return torch.where(q[:, :1] < 0, -q, q)


def covariance_axes(covars: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-scales (N, 3), wxyz quaternions (N, 4)) of 3D covariances (N, 3, 3): their
    eigen-decomposition (float64), eigenvectors made a proper rotation."""
    evals, evecs = torch.linalg.eigh(covars.double())
    evecs[torch.linalg.det(evecs) < 0, :, 2] *= -1  # a proper rotation
    return 0.5 * evals.clamp(min=1e-30).log(), rotmats_to_quats(evecs)


# ---------------------------------------------------------------------------------------------
# 4D: isoclinic pairs
# ---------------------------------------------------------------------------------------------


def left_isoclinic(q: torch.Tensor) -> torch.Tensor:
    a, b, c, d = q.unbind(-1)
    rows = [a, -b, -c, -d, b, a, -d, c, c, d, a, -b, d, -c, b, a]
    return torch.stack(rows, -1).reshape(q.shape[:-1] + (4, 4))


def right_isoclinic(q: torch.Tensor) -> torch.Tensor:
    p, r, s, u = q.unbind(-1)
    rows = [p, -r, -s, -u, r, p, u, -s, s, -u, p, r, u, s, -r, p]
    return torch.stack(rows, -1).reshape(q.shape[:-1] + (4, 4))


def rotation_4d(q_left: torch.Tensor, q_right: torch.Tensor) -> torch.Tensor:
    return left_isoclinic(F.normalize(q_left, dim=-1)) @ right_isoclinic(F.normalize(q_right, dim=-1))


def embed_3d_rotation(quats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Left/right quaternions of the 4D rotation that applies the 3D rotation `quats` (N, 4) wxyz to
    x, y, z and leaves t alone: with q = (w, x, y, z), q_l = (w, z, -y, x) and q_r = (w, z, -y, -x).
    (x k^-1 moves the quaternion's real axis onto t; conjugating q x q^-1 by it gives this pair.)"""
    w, x, y, z = quats.unbind(-1)
    return torch.stack([w, z, -y, x], -1), torch.stack([w, z, -y, -x], -1)


def _isoclinic_basis(dtype, device) -> torch.Tensor:
    """B[i, j] = L(e_i) R(e_j): 16 mutually orthogonal 4x4 matrices (Frobenius norm^2 = 4) that
    span all 4x4 matrices; a rotation L(a) R(b) has coordinates a_i b_j in this basis."""
    eye = torch.eye(4, dtype=dtype, device=device)
    return left_isoclinic(eye)[:, None] @ right_isoclinic(eye)[None, :]


def factor_rotation_4d(R: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Left/right unit quaternions (N, 4) with L(q_l) R(q_r) = R for rotations R (N, 4, 4) in
    SO(4) (Van Elfrinkhof / Cayley factorisation: the associate matrix q_l q_r^T is rank one)."""
    basis = _isoclinic_basis(R.dtype, R.device)
    assoc = torch.einsum("nkl,ijkl->nij", R, basis) / 4.0  # (N, 4, 4) = a b^T
    col = assoc.norm(dim=1).argmax(dim=-1)  # the strongest column is a multiple of a
    a = F.normalize(assoc.gather(2, col[:, None, None].expand(-1, 4, 1))[..., 0], dim=-1)
    b = F.normalize(torch.einsum("nij,ni->nj", assoc, a), dim=-1)
    return a, b


def scale_space_4d(
    log_scales: torch.Tensor, q_left: torch.Tensor, q_right: torch.Tensor, factor: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 4D Gaussians whose covariance is D Sigma4 D with D = diag(f, f, f, 1): space scaled by
    `factor`, time kept. (Scaling the spatial log-scales alone is exact only for rotations that do
    not mix space and time.) Returns new (log_scales, q_left, q_right); means scale separately."""
    dt = torch.float64
    M = rotation_4d(q_left.to(dt), q_right.to(dt)) * log_scales.to(dt).exp()[:, None, :]
    M = torch.diag(torch.tensor([factor, factor, factor, 1.0], dtype=dt, device=M.device)) @ M
    U, S, _ = torch.linalg.svd(M)  # D R S (D R S)^T = U S^2 U^T
    flip = torch.linalg.det(U) < 0
    U[flip, :, 3] = -U[flip, :, 3]  # a proper rotation (the sign of an axis does not matter)
    q_l, q_r = factor_rotation_4d(U)
    f = log_scales.dtype
    return S.clamp(min=1e-30).log().to(f), q_l.to(f), q_r.to(f)
