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
sh_grads = wp.types.matrix(shape=(16, 3), dtype=wp.float32)  # d loss / d coefficient, one row per band

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
    dc: wp.array2d(dtype=wp.vec3),  # (N or C*N, 1): the DC band
    rest: wp.array2d(dtype=wp.vec3),  # (N or C*N, K - 1): bands 1..
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
    c = wp.vec3(0.5) + b[0] * dc[row, 0]
    for k in range(1, num_bases):
        c += b[k] * rest[row, k - 1]
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
    dc: wp.array2d(dtype=wp.vec3),
    rest: wp.array2d(dtype=wp.vec3),
    coeffs_per_camera: int,
    radii: wp.array(dtype=wp.vec2i),
    v_colors: wp.array(dtype=wp.vec3),
    v_dc: wp.array2d(dtype=wp.vec3),  # out, every entry written
    v_rest: wp.array2d(dtype=wp.vec3),  # out, every entry written (zero past the active degree)
    v_means: wp.array(dtype=wp.vec3),  # (N) out
):
    n = wp.tid() + offset
    v_mean = wp.vec3(0.0)
    v_sum = sh_grads()  # d loss / d coefficient of shared coefficients, summed over cameras
    for cam in range(num_cameras):
        i = cam * num_gaussians + n
        row = n
        if coeffs_per_camera != 0:
            row = i
        v_row = sh_grads()
        r = radii[i]
        if r[0] != 0 or r[1] != 0:
            delta = means[n] - campos[cam]
            inv_len = 1.0 / wp.length(delta)
            d = delta * inv_len
            b = sh_basis(degree, d)
            c = wp.vec3(0.5) + b[0] * dc[row, 0]
            for k in range(1, num_bases):
                c += b[k] * rest[row, k - 1]
            # the clamp at 0 lets gradient through where the colour is not clamped
            v_c = v_colors[i]
            v_c = wp.vec3(
                wp.where(c[0] >= 0.0, v_c[0], 0.0),
                wp.where(c[1] >= 0.0, v_c[1], 0.0),
                wp.where(c[2] >= 0.0, v_c[2], 0.0),
            )
            v_b = vec16()
            v_row[0] = b[0] * v_c
            v_b[0] = wp.dot(dc[row, 0], v_c)
            for k in range(1, num_bases):
                v_row[k] = b[k] * v_c
                v_b[k] = wp.dot(rest[row, k - 1], v_c)
            v_d = sh_basis_vjp(degree, d, v_b)
            v_mean += (v_d - d * wp.dot(d, v_d)) * inv_len
        if coeffs_per_camera != 0:
            write_grads(v_dc, v_rest, row, v_row)
        else:
            v_sum += v_row
    if coeffs_per_camera == 0:
        write_grads(v_dc, v_rest, n, v_sum)
    v_means[n] = v_mean


@wp.func
def write_grads(v_dc: wp.array2d(dtype=wp.vec3), v_rest: wp.array2d(dtype=wp.vec3), row: int, v: sh_grads):
    """One table row's gradients: every band the tables hold (zero past the active degree)."""
    v_dc[row, 0] = v[0]
    for k in range(v_rest.shape[1]):
        value = wp.vec3(0.0)
        if k < 15:
            value = v[k + 1]
        v_rest[row, k] = value


class _SHColors(torch.autograd.Function):
    @staticmethod
    def forward(ctx, degree, means, campos, dc, rest, radii):
        C = campos.shape[0]
        N = means.shape[0]
        colors = torch.empty((C, N, 3), dtype=torch.float32, device=means.device)
        A = warp_runtime.array
        warp_runtime.launch(
            sh_colors_fwd,
            C * N,
            [
                degree,
                (degree + 1) ** 2,
                N,
                A(means, wp.vec3),
                A(campos, wp.vec3),
                _table(dc),
                _table(rest),
                int(dc.dim() == 4),
                A(radii, wp.vec2i),
            ],
            [A(colors, wp.vec3)],
            device=means.device,
        )
        ctx.save_for_backward(means, campos, dc, rest, radii)
        ctx.degree = degree
        return colors

    @staticmethod
    def backward(ctx, v_colors):
        means, campos, dc, rest, radii = ctx.saved_tensors
        degree = ctx.degree
        C = campos.shape[0]
        N = means.shape[0]
        v_dc = torch.empty_like(dc)  # the kernel writes every entry
        v_rest = torch.empty_like(rest)
        v_means = torch.empty_like(means)
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
                _table(dc),
                _table(rest),
                int(dc.dim() == 4),
                A(radii, wp.vec2i),
                A(v_colors.contiguous().float(), wp.vec3),
            ],
            [_table(v_dc), _table(v_rest), A(v_means, wp.vec3)],
            device=means.device,
        )
        return None, v_means, None, v_dc, v_rest, None


def _table(t: torch.Tensor) -> wp.array:
    """(rows, bands) Warp view (vec3 entries) of a (N, K, 3) or (C, N, K, 3) coefficient tensor,
    which may be a view into a larger table (band and row strides are kept)."""
    warp_runtime.init()
    return wp.from_torch(t.reshape(-1, t.shape[-2], 3), dtype=wp.vec3, requires_grad=False)


def sh_colors(
    degree: int,
    means: torch.Tensor,
    campos: torch.Tensor,
    coeffs: torch.Tensor,
    radii: torch.Tensor,
    coeffs_rest: torch.Tensor | None = None,
) -> torch.Tensor:
    """Colours (C, N, 3) = max(SH(normalise(mean - campos)) + 0.5, 0); zero where radii == 0.

    coeffs: (N, K, 3) shared by all cameras or (C, N, K, 3) per camera, K >= (degree + 1)^2. Or,
    with `coeffs_rest`, the DC band alone, (N, 1, 3) or (C, N, 1, 3), and the higher bands in
    `coeffs_rest` ((N, K - 1, 3) or (C, N, K - 1, 3)): a model that keeps them apart (sh0 / shN)
    is not concatenated every step. campos: (C, 3) camera centres in world space.
    Differentiable w.r.t. means and the coefficients.
    """
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"sh_degree: expected 0..{MAX_SH_DEGREE}, got {degree}")
    if coeffs_rest is None:  # one table: the kernels read its two parts as views, without a copy
        coeffs = coeffs.contiguous()
        dc, rest = coeffs[..., :1, :], coeffs[..., 1:, :]
        if rest.shape[-2] == 0:
            rest = coeffs.new_zeros(coeffs.shape[:-2] + (1, 3))  # degree 0: never read
        out = _SHColors.apply(int(degree), means, campos, dc, rest, radii)
        return out
    if coeffs_rest.shape[-2] == 0:
        coeffs_rest = coeffs.new_zeros(coeffs.shape[:-2] + (1, 3))
    return _SHColors.apply(int(degree), means, campos, coeffs.contiguous(), coeffs_rest.contiguous(), radii)
