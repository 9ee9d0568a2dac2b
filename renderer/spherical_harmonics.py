"""View-dependent colour from spherical-harmonic coefficients, as a Warp kernel pair.

colour = max(SH(dir) + 0.5, 0) with dir = normalise(mean - camera centre), real SH up to degree 3
with the INRIA 3DGS constants and sign conventions, evaluated only for Gaussians a camera sees.
Gradients flow to the coefficients and, through the view direction, to the means (as gsplat).
"""

from __future__ import annotations

import torch
import warp as wp

from . import warp_runtime
from .constants import SH_C0

wp.set_module_options(warp_runtime.KERNEL_OPTIONS)

MAX_SH_DEGREE = 3
vec16 = wp.types.vector(length=16, dtype=wp.float32)

SH_C1 = wp.constant(0.4886025119029199)
SH_C2_0 = wp.constant(1.0925484305920792)
SH_C2_1 = wp.constant(-1.0925484305920792)
SH_C2_2 = wp.constant(0.31539156525252005)
SH_C2_3 = wp.constant(-1.0925484305920792)
SH_C2_4 = wp.constant(0.5462742152960396)
SH_C3_0 = wp.constant(-0.5900435899266435)
SH_C3_1 = wp.constant(2.890611442640554)
SH_C3_2 = wp.constant(-0.4570457994644658)
SH_C3_3 = wp.constant(0.3731763325901154)
SH_C3_4 = wp.constant(-0.4570457994644658)
SH_C3_5 = wp.constant(1.445305721320277)
SH_C3_6 = wp.constant(-0.5900435899266435)


@wp.func
def sh_basis(degree: int, d: wp.vec3) -> vec16:
    """The 16 real SH basis functions at unit direction d (entries past (degree+1)^2 stay 0)."""
    b = vec16()
    b[0] = SH_C0
    if degree < 1:
        return b
    x = d[0]
    y = d[1]
    z = d[2]
    b[1] = -SH_C1 * y
    b[2] = SH_C1 * z
    b[3] = -SH_C1 * x
    if degree < 2:
        return b
    xx = x * x
    yy = y * y
    zz = z * z
    b[4] = SH_C2_0 * x * y
    b[5] = SH_C2_1 * y * z
    b[6] = SH_C2_2 * (2.0 * zz - xx - yy)
    b[7] = SH_C2_3 * x * z
    b[8] = SH_C2_4 * (xx - yy)
    if degree < 3:
        return b
    b[9] = SH_C3_0 * y * (3.0 * xx - yy)
    b[10] = SH_C3_1 * x * y * z
    b[11] = SH_C3_2 * y * (4.0 * zz - xx - yy)
    b[12] = SH_C3_3 * z * (2.0 * zz - 3.0 * xx - 3.0 * yy)
    b[13] = SH_C3_4 * x * (4.0 * zz - xx - yy)
    b[14] = SH_C3_5 * z * (xx - yy)
    b[15] = SH_C3_6 * x * (xx - 3.0 * yy)
    return b


@wp.func
def sh_basis_vjp(degree: int, d: wp.vec3, v_b: vec16) -> wp.vec3:
    """Gradient w.r.t. d of sum_k v_b[k] * basis_k(d), the basis polynomials taken as written."""
    v_d = wp.vec3(0.0)
    if degree < 1:
        return v_d
    x = d[0]
    y = d[1]
    z = d[2]
    gx = -SH_C1 * v_b[3]
    gy = -SH_C1 * v_b[1]
    gz = SH_C1 * v_b[2]
    if degree >= 2:
        xx = x * x
        yy = y * y
        zz = z * z
        gx += SH_C2_0 * y * v_b[4] - 2.0 * SH_C2_2 * x * v_b[6] + SH_C2_3 * z * v_b[7] + 2.0 * SH_C2_4 * x * v_b[8]
        gy += SH_C2_0 * x * v_b[4] + SH_C2_1 * z * v_b[5] - 2.0 * SH_C2_2 * y * v_b[6] - 2.0 * SH_C2_4 * y * v_b[8]
        gz += SH_C2_1 * y * v_b[5] + 4.0 * SH_C2_2 * z * v_b[6] + SH_C2_3 * x * v_b[7]
        if degree >= 3:
            gx += (
                6.0 * SH_C3_0 * x * y * v_b[9]
                + SH_C3_1 * y * z * v_b[10]
                - 2.0 * SH_C3_2 * x * y * v_b[11]
                - 6.0 * SH_C3_3 * x * z * v_b[12]
                + SH_C3_4 * (4.0 * zz - 3.0 * xx - yy) * v_b[13]
                + 2.0 * SH_C3_5 * x * z * v_b[14]
                + 3.0 * SH_C3_6 * (xx - yy) * v_b[15]
            )
            gy += (
                3.0 * SH_C3_0 * (xx - yy) * v_b[9]
                + SH_C3_1 * x * z * v_b[10]
                + SH_C3_2 * (4.0 * zz - xx - 3.0 * yy) * v_b[11]
                - 6.0 * SH_C3_3 * y * z * v_b[12]
                - 2.0 * SH_C3_4 * x * y * v_b[13]
                - 2.0 * SH_C3_5 * y * z * v_b[14]
                - 6.0 * SH_C3_6 * x * y * v_b[15]
            )
            gz += (
                SH_C3_1 * x * y * v_b[10]
                + 8.0 * SH_C3_2 * y * z * v_b[11]
                + SH_C3_3 * (6.0 * zz - 3.0 * xx - 3.0 * yy) * v_b[12]
                + 8.0 * SH_C3_4 * x * z * v_b[13]
                + SH_C3_5 * (xx - yy) * v_b[14]
            )
    return wp.vec3(gx, gy, gz)


@wp.kernel
def sh_colors_fwd(
    offset: int,
    degree: int,
    num_bases: int,
    num_gaussians: int,
    means: wp.array(dtype=wp.vec3),
    campos: wp.array(dtype=wp.vec3),
    coeffs: wp.array2d(dtype=wp.vec3),  # (N or C*N, K)
    coeffs_per_camera: int,
    radii: wp.array(dtype=wp.vec2i),
    colors: wp.array(dtype=wp.vec3),  # (C*N) out
):
    i = wp.tid() + offset
    r = radii[i]
    if r[0] == 0 and r[1] == 0:
        colors[i] = wp.vec3(0.0)
        return
    cam = i // num_gaussians
    n = i - cam * num_gaussians
    row = n
    if coeffs_per_camera != 0:
        row = i
    b = sh_basis(degree, wp.normalize(means[n] - campos[cam]))
    c = wp.vec3(0.5)
    for k in range(num_bases):
        c += b[k] * coeffs[row, k]
    colors[i] = wp.max(c, wp.vec3(0.0))


@wp.kernel
def sh_colors_bwd(
    offset: int,
    degree: int,
    num_bases: int,
    num_gaussians: int,
    num_cameras: int,
    means: wp.array(dtype=wp.vec3),
    campos: wp.array(dtype=wp.vec3),
    coeffs: wp.array2d(dtype=wp.vec3),
    coeffs_per_camera: int,
    radii: wp.array(dtype=wp.vec2i),
    v_colors: wp.array(dtype=wp.vec3),
    v_coeffs: wp.array2d(dtype=wp.vec3),  # zero-initialised, same shape as coeffs
    v_means: wp.array(dtype=wp.vec3),  # (N)
):
    n = wp.tid() + offset
    v_mean = wp.vec3(0.0)
    for cam in range(num_cameras):
        i = cam * num_gaussians + n
        r = radii[i]
        if r[0] == 0 and r[1] == 0:
            continue
        row = n
        if coeffs_per_camera != 0:
            row = i
        delta = means[n] - campos[cam]
        inv_len = 1.0 / wp.length(delta)
        d = delta * inv_len
        b = sh_basis(degree, d)
        c = wp.vec3(0.5)
        for k in range(num_bases):
            c += b[k] * coeffs[row, k]
        # the clamp at 0 lets gradient through where the colour is not clamped
        v_c = v_colors[i]
        v_c = wp.vec3(
            wp.where(c[0] >= 0.0, v_c[0], 0.0), wp.where(c[1] >= 0.0, v_c[1], 0.0), wp.where(c[2] >= 0.0, v_c[2], 0.0)
        )
        v_b = vec16()
        for k in range(num_bases):
            v_coeffs[row, k] = v_coeffs[row, k] + b[k] * v_c
            v_b[k] = wp.dot(coeffs[row, k], v_c)
        v_d = sh_basis_vjp(degree, d, v_b)
        v_mean += (v_d - d * wp.dot(d, v_d)) * inv_len
    v_means[n] = v_mean


class _SHColors(torch.autograd.Function):
    @staticmethod
    def forward(ctx, degree, means, campos, coeffs, radii):
        C = campos.shape[0]
        N = means.shape[0]
        per_camera = coeffs.dim() == 4
        coeffs2d = coeffs.reshape(-1, coeffs.shape[-2], 3)
        num_bases = (degree + 1) ** 2
        colors = torch.empty((C, N, 3), dtype=torch.float32, device=means.device)
        A = warp_runtime.array
        warp_runtime.launch(
            sh_colors_fwd,
            C * N,
            [
                degree,
                num_bases,
                N,
                A(means, wp.vec3),
                A(campos, wp.vec3),
                A(coeffs2d, wp.vec3, 2),
                int(per_camera),
                A(radii, wp.vec2i),
            ],
            [A(colors, wp.vec3)],
            device=means.device,
        )
        ctx.save_for_backward(means, campos, coeffs, radii)
        ctx.degree = degree
        return colors

    @staticmethod
    def backward(ctx, v_colors):
        means, campos, coeffs, radii = ctx.saved_tensors
        degree = ctx.degree
        C = campos.shape[0]
        N = means.shape[0]
        per_camera = coeffs.dim() == 4
        coeffs2d = coeffs.reshape(-1, coeffs.shape[-2], 3)
        v_coeffs = torch.zeros_like(coeffs2d)
        v_means = torch.zeros_like(means)
        A = warp_runtime.array
        warp_runtime.launch(
            sh_colors_bwd,
            N,
            [
                degree,
                (degree + 1) ** 2,
                N,
                C,
                A(means, wp.vec3),
                A(campos, wp.vec3),
                A(coeffs2d, wp.vec3, 2),
                int(per_camera),
                A(radii, wp.vec2i),
                A(v_colors.contiguous().float(), wp.vec3),
            ],
            [A(v_coeffs, wp.vec3, 2), A(v_means, wp.vec3)],
            device=means.device,
        )
        return None, v_means, None, v_coeffs.view(coeffs.shape), None


def sh_colors(
    degree: int, means: torch.Tensor, campos: torch.Tensor, coeffs: torch.Tensor, radii: torch.Tensor
) -> torch.Tensor:
    """Colours (C, N, 3) = max(SH(normalise(mean - campos)) + 0.5, 0); zero where radii == 0.

    coeffs: (N, K, 3) shared by all cameras or (C, N, K, 3) per camera, K >= (degree + 1)^2.
    campos: (C, 3) camera centres in world space. Differentiable w.r.t. means and coeffs.
    """
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"sh_degree: expected 0..{MAX_SH_DEGREE}, got {degree}")
    return _SHColors.apply(int(degree), means, campos, coeffs, radii)
