"""Shared Gaussian maths as `@wp.func` helpers, each forward next to its hand-written VJP.

Conventions (gsplat / INRIA 3DGS): quaternions are wxyz and normalised here, not by the caller;
cameras use OpenCV axes (x right, y down, z forward); a 2D conic is stored as (a, b, c) of the
inverse 2D covariance [[a, b], [b, c]].

A `*_vjp` function takes the inputs of its forward twin plus the gradient of the forward's outputs
and returns the gradients of the inputs; it recomputes whatever intermediate values it needs.
"""

import warp as wp

from .constants import ALPHA_MAX, ALPHA_THRESHOLD, MAX_EXTENT_SIGMAS, TRANSMITTANCE_MIN  # noqa: F401 - used by kernels here and elsewhere

mat23 = wp.types.matrix(shape=(2, 3), dtype=wp.float32)
vec6 = wp.types.vector(length=6, dtype=wp.float32)


# ---------------------------------------------------------------------------------------------
# Quaternion + scale -> 3D covariance
# ---------------------------------------------------------------------------------------------


@wp.func
def quat_to_rotmat(q: wp.vec4) -> wp.mat33:
    qn = wp.normalize(q)
    w = qn[0]
    x = qn[1]
    y = qn[2]
    z = qn[3]
    return wp.mat33(
        1.0 - 2.0 * (y * y + z * z),
        2.0 * (x * y - w * z),
        2.0 * (x * z + w * y),
        2.0 * (x * y + w * z),
        1.0 - 2.0 * (x * x + z * z),
        2.0 * (y * z - w * x),
        2.0 * (x * z - w * y),
        2.0 * (y * z + w * x),
        1.0 - 2.0 * (x * x + y * y),
    )


@wp.func
def quat_to_rotmat_vjp(q: wp.vec4, v_R: wp.mat33) -> wp.vec4:
    inv_norm = 1.0 / wp.length(q)
    qn = q * inv_norm
    w = qn[0]
    x = qn[1]
    y = qn[2]
    z = qn[3]
    v_w = 2.0 * (x * (v_R[2, 1] - v_R[1, 2]) + y * (v_R[0, 2] - v_R[2, 0]) + z * (v_R[1, 0] - v_R[0, 1]))
    v_x = 2.0 * (
        -2.0 * x * (v_R[1, 1] + v_R[2, 2])
        + y * (v_R[1, 0] + v_R[0, 1])
        + z * (v_R[2, 0] + v_R[0, 2])
        + w * (v_R[2, 1] - v_R[1, 2])
    )
    v_y = 2.0 * (
        x * (v_R[1, 0] + v_R[0, 1])
        - 2.0 * y * (v_R[0, 0] + v_R[2, 2])
        + z * (v_R[2, 1] + v_R[1, 2])
        + w * (v_R[0, 2] - v_R[2, 0])
    )
    v_z = 2.0 * (
        x * (v_R[2, 0] + v_R[0, 2])
        + y * (v_R[2, 1] + v_R[1, 2])
        - 2.0 * z * (v_R[0, 0] + v_R[1, 1])
        + w * (v_R[1, 0] - v_R[0, 1])
    )
    v_qn = wp.vec4(v_w, v_x, v_y, v_z)
    # through the normalisation q -> q / |q|
    return (v_qn - qn * wp.dot(qn, v_qn)) * inv_norm


@wp.func
def covar_from_quat_scale(q: wp.vec4, s: wp.vec3) -> wp.mat33:
    M = quat_to_rotmat(q) @ wp.diag(s)
    return M @ wp.transpose(M)


@wp.func
def covar_from_quat_scale_vjp(q: wp.vec4, s: wp.vec3, v_covar: wp.mat33):
    R = quat_to_rotmat(q)
    M = R @ wp.diag(s)
    v_M = (v_covar + wp.transpose(v_covar)) @ M
    v_s = wp.vec3(
        v_M[0, 0] * R[0, 0] + v_M[1, 0] * R[1, 0] + v_M[2, 0] * R[2, 0],
        v_M[0, 1] * R[0, 1] + v_M[1, 1] * R[1, 1] + v_M[2, 1] * R[2, 1],
        v_M[0, 2] * R[0, 2] + v_M[1, 2] * R[1, 2] + v_M[2, 2] * R[2, 2],
    )
    return quat_to_rotmat_vjp(q, v_M @ wp.diag(s)), v_s


@wp.func
def covar_from_triu(c: vec6) -> wp.mat33:
    """Symmetric 3x3 from its upper triangle (xx, xy, xz, yy, yz, zz)."""
    return wp.mat33(c[0], c[1], c[2], c[1], c[3], c[4], c[2], c[4], c[5])


@wp.func
def covar_from_triu_vjp(v_covar: wp.mat33) -> vec6:
    return vec6(
        v_covar[0, 0],
        v_covar[0, 1] + v_covar[1, 0],
        v_covar[0, 2] + v_covar[2, 0],
        v_covar[1, 1],
        v_covar[1, 2] + v_covar[2, 1],
        v_covar[2, 2],
    )


# ---------------------------------------------------------------------------------------------
# World -> camera
# ---------------------------------------------------------------------------------------------


@wp.func
def view_rotation(view: wp.mat44) -> wp.mat33:
    return wp.mat33(
        view[0, 0],
        view[0, 1],
        view[0, 2],
        view[1, 0],
        view[1, 1],
        view[1, 2],
        view[2, 0],
        view[2, 1],
        view[2, 2],
    )


@wp.func
def view_translation(view: wp.mat44) -> wp.vec3:
    return wp.vec3(view[0, 3], view[1, 3], view[2, 3])


# ---------------------------------------------------------------------------------------------
# EWA projection to the image plane: pinhole (gsplat's off-screen Jacobian clamp) and ortho
# ---------------------------------------------------------------------------------------------


@wp.func
def pinhole_limits(fx: float, fy: float, cx: float, cy: float, width: float, height: float) -> wp.vec4:
    """(lim_x_neg, lim_x_pos, lim_y_neg, lim_y_pos): x/z range, 30% beyond the image, used in J."""
    margin_x = 0.3 * (0.5 * width / fx)
    margin_y = 0.3 * (0.5 * height / fy)
    return wp.vec4(cx / fx + margin_x, (width - cx) / fx + margin_x, cy / fy + margin_y, (height - cy) / fy + margin_y)


@wp.func
def pinhole_jacobian(p: wp.vec3, fx: float, fy: float, lim: wp.vec4) -> mat23:
    rz = 1.0 / p[2]
    tx = p[2] * wp.clamp(p[0] * rz, -lim[0], lim[1])
    ty = p[2] * wp.clamp(p[1] * rz, -lim[2], lim[3])
    return mat23(fx * rz, 0.0, -fx * tx * rz * rz, 0.0, fy * rz, -fy * ty * rz * rz)


@wp.func
def project(p: wp.vec3, cov: wp.mat33, K: wp.mat33, width: float, height: float, ortho: int):
    """Camera-space mean and covariance -> pixel-space mean and 2D covariance."""
    fx = K[0, 0]
    fy = K[1, 1]
    cx = K[0, 2]
    cy = K[1, 2]
    J = mat23(fx, 0.0, 0.0, 0.0, fy, 0.0)
    mean2d = wp.vec2(fx * p[0] + cx, fy * p[1] + cy)
    if ortho == 0:
        J = pinhole_jacobian(p, fx, fy, pinhole_limits(fx, fy, cx, cy, width, height))
        mean2d = wp.vec2(fx * p[0] / p[2] + cx, fy * p[1] / p[2] + cy)
    return mean2d, J @ cov @ wp.transpose(J)


@wp.func
def project_vjp(
    p: wp.vec3,
    cov: wp.mat33,
    K: wp.mat33,
    width: float,
    height: float,
    ortho: int,
    v_mean2d: wp.vec2,
    v_cov2d: wp.mat22,
):
    fx = K[0, 0]
    fy = K[1, 1]
    cx = K[0, 2]
    cy = K[1, 2]
    if ortho != 0:
        J = mat23(fx, 0.0, 0.0, 0.0, fy, 0.0)
        return wp.vec3(fx * v_mean2d[0], fy * v_mean2d[1], 0.0), wp.transpose(J) @ v_cov2d @ J

    lim = pinhole_limits(fx, fy, cx, cy, width, height)
    J = pinhole_jacobian(p, fx, fy, lim)
    v_cov = wp.transpose(J) @ v_cov2d @ J
    x = p[0]
    y = p[1]
    rz = 1.0 / p[2]
    rz2 = rz * rz
    rz3 = rz2 * rz
    v_p = wp.vec3(fx * rz * v_mean2d[0], fy * rz * v_mean2d[1], -(fx * x * v_mean2d[0] + fy * y * v_mean2d[1]) * rz2)

    # J depends on p: dL/dJ for cov2d = J cov J^T
    v_J = v_cov2d @ J @ wp.transpose(cov) + wp.transpose(v_cov2d) @ J @ cov
    tx = p[2] * wp.clamp(x * rz, -lim[0], lim[1])
    ty = p[2] * wp.clamp(y * rz, -lim[2], lim[3])
    vx = v_p[0]
    vy = v_p[1]
    vz = v_p[2]
    if x * rz <= lim[1] and x * rz >= -lim[0]:
        vx += -fx * rz2 * v_J[0, 2]
    else:
        vz += -fx * rz3 * v_J[0, 2] * tx
    if y * rz <= lim[3] and y * rz >= -lim[2]:
        vy += -fy * rz2 * v_J[1, 2]
    else:
        vz += -fy * rz3 * v_J[1, 2] * ty
    vz += (
        -fx * rz2 * v_J[0, 0] - fy * rz2 * v_J[1, 1] + 2.0 * fx * tx * rz3 * v_J[0, 2] + 2.0 * fy * ty * rz3 * v_J[1, 2]
    )
    return wp.vec3(vx, vy, vz), v_cov


# ---------------------------------------------------------------------------------------------
# Low-pass blur (eps2d), conic and Mip-Splatting compensation
# ---------------------------------------------------------------------------------------------


@wp.func
def blurred_conic(cov2d: wp.mat22, eps2d: float):
    """Returns (conic (a, b, c), det of the blurred covariance, compensation sqrt(det/det_blur))."""
    a = cov2d[0, 0]
    b = 0.5 * (cov2d[0, 1] + cov2d[1, 0])
    c = cov2d[1, 1]
    det_orig = a * c - b * b
    a_b = a + eps2d
    c_b = c + eps2d
    det = a_b * c_b - b * b
    compensation = wp.sqrt(wp.max(0.0, det_orig / det))
    inv_det = 1.0 / det
    return wp.vec3(c_b * inv_det, -b * inv_det, a_b * inv_det), det, compensation


@wp.func
def blurred_conic_vjp(cov2d: wp.mat22, eps2d: float, v_conic: wp.vec3, v_compensation: float) -> wp.mat22:
    a = cov2d[0, 0]
    b = 0.5 * (cov2d[0, 1] + cov2d[1, 0])
    c = cov2d[1, 1]
    a_b = a + eps2d
    c_b = c + eps2d
    det = a_b * c_b - b * b
    det_orig = a * c - b * b
    inv_det = 1.0 / det
    inv_det2 = inv_det * inv_det
    # conic = (c_b, -b, a_b) / det
    v_a = (
        v_conic[0] * (-c_b * c_b * inv_det2)
        + v_conic[1] * (b * c_b * inv_det2)
        + v_conic[2] * (inv_det - a_b * c_b * inv_det2)
    )
    v_c = (
        v_conic[0] * (inv_det - c_b * a_b * inv_det2)
        + v_conic[1] * (b * a_b * inv_det2)
        + v_conic[2] * (-a_b * a_b * inv_det2)
    )
    v_b = (
        v_conic[0] * (2.0 * b * c_b * inv_det2)
        + v_conic[1] * (-inv_det - 2.0 * b * b * inv_det2)
        + v_conic[2] * (2.0 * a_b * b * inv_det2)
    )
    # compensation = sqrt(r), r = det_orig / det
    r = det_orig / det
    if r > 0.0 and v_compensation != 0.0:
        v_r = v_compensation * 0.5 / wp.sqrt(r)
        v_a += v_r * (c * det - det_orig * c_b) * inv_det2
        v_c += v_r * (a * det - det_orig * a_b) * inv_det2
        v_b += v_r * (-2.0 * b * (det - det_orig)) * inv_det2
    return wp.mat22(v_a, 0.5 * v_b, 0.5 * v_b, v_c)


@wp.func
def extent_sigmas(opacity: float) -> float:
    """Half-size of the bounding box in standard deviations: where opacity * exp(-r^2/2) = 1/255.

    Outside this box every pixel's alpha is below the skip threshold, so tile binning by it loses
    nothing the compositing would have kept (tighter boxes than a fixed 3 sigma, as in gsplat).
    """
    return wp.min(MAX_EXTENT_SIGMAS, wp.sqrt(2.0 * wp.log(opacity / ALPHA_THRESHOLD)))


# ---------------------------------------------------------------------------------------------
# A projected splat at a pixel (shared by every compositing kernel)
# ---------------------------------------------------------------------------------------------

# Per (camera, Gaussian) record read by the compositing loop, packed so one 32-byte load brings
# everything: mean x, y; conic a, b, c; opacity; log(255 * opacity); padding.
splat2d = wp.types.vector(length=8, dtype=wp.float32)


@wp.func
def splat_alpha(s: splat2d, px: float, py: float):
    """(unclamped alpha, dx, dy) of one splat at a pixel centre; alpha 0 when it is skipped.

    `power > log(255 * opacity)` means alpha < 1/255: that test rejects most (splat, pixel) pairs
    before the exponential. Forward and backward call this same function, so they always agree
    on which splats a pixel blends.
    """
    dx = s[0] - px
    dy = s[1] - py
    power = 0.5 * (s[2] * dx * dx + s[4] * dy * dy) + s[3] * dx * dy
    raw_alpha = float(0.0)
    if power <= s[6] and power >= 0.0:
        raw_alpha = s[5] * wp.exp(-power)
        if raw_alpha < ALPHA_THRESHOLD:
            raw_alpha = 0.0
    return raw_alpha, dx, dy


# exp(-p) for the vectorised CPU compositing kernels, where a call to expf would stop the loop
# vectoriser: e^-p = (e^(-p/4))^4, e^-t from a degree-7 fit on [0, 1.5] that is exactly 1 at 0.
# Within 2.6e-7 absolute (what a pixel's colour follows) and 2.8e-6 relative (at small alpha) of
# exp(-p), for p in [0, 6]; alpha needs p <= log(255) = 5.55, and larger p are clamped (those
# pixels are skipped anyway). Cody-Waite range reduction with an exact 2^-k reached expf's
# accuracy (7e-8) but cost the compositing kernels 14% more time (bench: same lego frame).
EXP_NEG_COEFFS = (
    1.0,
    -0.9999989867210388,
    0.49998489022254944,
    -0.1665874570608139,
    0.04146357998251915,
    -0.00804613996297121,
    0.0011563149746507406,
    -9.275738557334989e-05,
)
_E0, _E1, _E2, _E3, _E4, _E5, _E6, _E7 = (wp.constant(c) for c in EXP_NEG_COEFFS)


@wp.func
def exp_neg(p: float) -> float:
    """exp(-p) for p in [0, 6] (see EXP_NEG_COEFFS), in multiplies and adds only."""
    t = wp.min(p, 6.0) * 0.25
    y = _E7 * t + _E6
    y = y * t + _E5
    y = y * t + _E4
    y = y * t + _E3
    y = y * t + _E2
    y = y * t + _E1
    y = y * t + _E0
    y = y * y
    return y * y


@wp.func
def lane_alpha(s: splat2d, x: int, py: float):
    """`splat_alpha` at the centre of pixel column x for the vectorised tile kernels: (unclamped
    alpha, blended?, dx, dy). The same power as splat_alpha, bit for bit, and the same skip rule;
    alpha through `exp_neg`. Branch-free, so a loop over a row's pixels vectorises."""
    dx = s[0] - (float(x) + 0.5)
    dy = s[1] - py
    power = 0.5 * (s[2] * dx * dx + s[4] * dy * dy) + s[3] * dx * dy
    raw_alpha = s[5] * exp_neg(power)
    inside = power <= s[6] and power >= 0.0 and raw_alpha >= ALPHA_THRESHOLD
    return raw_alpha, inside, dx, dy


@wp.func
def splat_alpha_vjp(s: splat2d, raw_alpha: float, dx: float, dy: float, v_alpha: float):
    """Gradients (mean2d, conic, opacity) of one splat's alpha at a pixel, given d loss / d alpha.

    Zero where alpha was clamped at ALPHA_MAX (the clamp's gradient is zero there)."""
    if raw_alpha > ALPHA_MAX:
        return wp.vec2(0.0), wp.vec3(0.0), 0.0
    v_power = -raw_alpha * v_alpha
    v_mean = wp.vec2(v_power * (s[2] * dx + s[3] * dy), v_power * (s[3] * dx + s[4] * dy))
    v_conic = wp.vec3(0.5 * v_power * dx * dx, v_power * dx * dy, 0.5 * v_power * dy * dy)
    return v_mean, v_conic, raw_alpha / s[5] * v_alpha
