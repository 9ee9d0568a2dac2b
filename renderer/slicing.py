"""4D Gaussians (XYZT) sliced at a time t into 3D Gaussians, as Warp kernel pairs.

A 4D Gaussian has a mean (x, y, z, t), four activated scales, a 4D rotation and an opacity. Its
covariance Sigma4 = (R4 S)(R4 S)^T splits into U (3x3), V (3x1) and W (1x1). Conditioning on time t
gives a 3D Gaussian (Yang et al. 2024, "Real-time photorealistic dynamic scene representation";
Duan et al. 2024, 4D-Rotor GS):

    mean3(t)    = mu_xyz + V / W * (t - mu_t)        (moves at constant velocity V / W)
    Sigma3      = U - V V^T / W                     (independent of t)
    opacity(t)  = opacity * exp(-0.5 (t - mu_t)^2 / W)

The rendering path is therefore two stages, each a forward kernel with a hand-written backward:

1. `covariance_4d` (once per step, whatever the number of times rendered): scales + rotation ->
   Sigma3 (N, 3, 3), velocity V/W (N, 3) and temporal variance W (N,).
2. `slice_at_times` (per (time, Gaussian)): mean3 and temporal weight at each requested t.

The sliced Gaussians then go through the ordinary 3D projection and rasterizer (`rasterize` with
`covars=`): there is no second rasterizer. Gaussians whose opacity x temporal weight is below 1/255
cannot produce a visible pixel (the rasterizer skips alphas below 1/255), so they are dropped before
projection and tile binning: exact culling.

Rotation parametrisation: a left/right pair of unit quaternions, R4 = L(q_l) R(q_r), where L and R
are the left- and right-isoclinic 4x4 matrices (Yang et al.). Every SO(4) rotation has this form,
the constraint is just two independent quaternion normalisations (which the kernels apply, so the
optimiser works on free 8-vectors, as for 3D quaternions), and q_l = q_r = (1, 0, 0, 0) is the
identity: a static 3D splat is a 4D one with identity rotation and a huge time scale (the torch
forms of these rotations, their factorisation and the embedding of a 3D rotation: splat/rotation.py).
The 4D rotor
(Duan et al.) needs a projection onto its bivector constraint (s p - bxy bzw + bxz byw - bxw byz =
0) before normalising, which couples all eight components in the backward pass for no gain in
expressiveness.
"""

from __future__ import annotations

import torch
import warp as wp

from splat.rotation import (
    embed_3d_rotation,  # noqa: F401 - re-exported, as are the next two
    factor_rotation_4d,  # noqa: F401
    scale_space_4d,  # noqa: F401
)

from . import warp_runtime

wp.set_module_options(warp_runtime.KERNEL_OPTIONS)

TIME_VARIANCE_MIN = wp.constant(1e-12)  # W is a variance; keep the divisions finite


# ---------------------------------------------------------------------------------------------
# Isoclinic matrices and their VJPs (linear in the quaternion, so the VJP is a fixed contraction)
# ---------------------------------------------------------------------------------------------


@wp.func
def left_isoclinic(q: wp.vec4) -> wp.mat44:
    a = q[0]
    b = q[1]
    c = q[2]
    d = q[3]
    # fmt: off
    return wp.mat44(
        a, -b, -c, -d,
        b, a, -d, c,
        c, d, a, -b,
        d, -c, b, a,
    )
    # fmt: on


@wp.func
def left_isoclinic_vjp(g: wp.mat44) -> wp.vec4:
    return wp.vec4(
        g[0, 0] + g[1, 1] + g[2, 2] + g[3, 3],
        -g[0, 1] + g[1, 0] - g[2, 3] + g[3, 2],
        -g[0, 2] + g[1, 3] + g[2, 0] - g[3, 1],
        -g[0, 3] - g[1, 2] + g[2, 1] + g[3, 0],
    )


@wp.func
def right_isoclinic(q: wp.vec4) -> wp.mat44:
    p = q[0]
    r = q[1]
    s = q[2]
    u = q[3]
    # fmt: off
    return wp.mat44(
        p, -r, -s, -u,
        r, p, u, -s,
        s, -u, p, r,
        u, s, -r, p,
    )
    # fmt: on


@wp.func
def right_isoclinic_vjp(g: wp.mat44) -> wp.vec4:
    return wp.vec4(
        g[0, 0] + g[1, 1] + g[2, 2] + g[3, 3],
        -g[0, 1] + g[1, 0] + g[2, 3] - g[3, 2],
        -g[0, 2] - g[1, 3] + g[2, 0] + g[3, 1],
        -g[0, 3] + g[1, 2] - g[2, 1] + g[3, 0],
    )


@wp.func
def normalize_vjp(q: wp.vec4, v_qn: wp.vec4) -> wp.vec4:
    """Gradient through q -> q / |q|."""
    inv_norm = 1.0 / wp.length(q)
    qn = q * inv_norm
    return (v_qn - qn * wp.dot(qn, v_qn)) * inv_norm


@wp.func
def rotation_4d(q_left: wp.vec4, q_right: wp.vec4) -> wp.mat44:
    return left_isoclinic(wp.normalize(q_left)) @ right_isoclinic(wp.normalize(q_right))


@wp.func
def scaled_rotation_4d(q_left: wp.vec4, q_right: wp.vec4, s: wp.vec4) -> wp.mat44:
    """M = R4 diag(s), so Sigma4 = M M^T."""
    return rotation_4d(q_left, q_right) @ wp.diag(s)


# ---------------------------------------------------------------------------------------------
# Stage 1: Sigma4 -> (Sigma3, velocity, W), once per step
# ---------------------------------------------------------------------------------------------


@wp.kernel
def covariance_4d_fwd(
    offset: int,
    scales: wp.array(dtype=wp.vec4),
    q_left: wp.array(dtype=wp.vec4),
    q_right: wp.array(dtype=wp.vec4),
    covars3: wp.array(dtype=wp.mat33),
    velocities: wp.array(dtype=wp.vec3),
    time_vars: wp.array(dtype=float),
):
    n = wp.tid() + offset
    M = scaled_rotation_4d(q_left[n], q_right[n], scales[n])
    S = M @ wp.transpose(M)
    W = wp.max(S[3, 3], TIME_VARIANCE_MIN)
    V = wp.vec3(S[0, 3], S[1, 3], S[2, 3])
    U = wp.mat33(S[0, 0], S[0, 1], S[0, 2], S[1, 0], S[1, 1], S[1, 2], S[2, 0], S[2, 1], S[2, 2])
    covars3[n] = U - wp.outer(V, V) / W
    velocities[n] = V / W
    time_vars[n] = W


@wp.kernel
def covariance_4d_bwd(
    offset: int,
    scales: wp.array(dtype=wp.vec4),
    q_left: wp.array(dtype=wp.vec4),
    q_right: wp.array(dtype=wp.vec4),
    v_covars3: wp.array(dtype=wp.mat33),
    v_velocities: wp.array(dtype=wp.vec3),
    v_time_vars: wp.array(dtype=float),
    v_scales: wp.array(dtype=wp.vec4),
    v_q_left: wp.array(dtype=wp.vec4),
    v_q_right: wp.array(dtype=wp.vec4),
):
    n = wp.tid() + offset
    ql = wp.normalize(q_left[n])
    qr = wp.normalize(q_right[n])
    L = left_isoclinic(ql)
    Rr = right_isoclinic(qr)
    R = L @ Rr
    s = scales[n]
    M = R @ wp.diag(s)
    S = M @ wp.transpose(M)
    W_raw = S[3, 3]
    W = wp.max(W_raw, TIME_VARIANCE_MIN)
    V = wp.vec3(S[0, 3], S[1, 3], S[2, 3])
    G = v_covars3[n]  # any 3x3 (callers may read only a triangle)
    g_vel = v_velocities[n]

    # Sigma3 = U - V V^T / W ; velocity = V / W
    v_V = -(G + wp.transpose(G)) @ V / W + g_vel / W
    v_W = wp.dot(V, G @ V) / (W * W) - wp.dot(g_vel, V) / (W * W) + v_time_vars[n]
    if W_raw < TIME_VARIANCE_MIN:
        v_W = 0.0

    # gradient w.r.t. Sigma4 read entry-wise (U block, V from the last column, W the corner)
    v_S = wp.mat44(
        G[0, 0],
        G[0, 1],
        G[0, 2],
        v_V[0],
        G[1, 0],
        G[1, 1],
        G[1, 2],
        v_V[1],
        G[2, 0],
        G[2, 1],
        G[2, 2],
        v_V[2],
        0.0,
        0.0,
        0.0,
        v_W,
    )
    v_M = (v_S + wp.transpose(v_S)) @ M
    v_s = wp.vec4(0.0)
    for i in range(4):
        acc = float(0.0)
        for j in range(4):
            acc += v_M[j, i] * R[j, i]
        v_s[i] = acc
    v_R = v_M @ wp.diag(s)
    v_scales[n] = v_s
    v_q_left[n] = normalize_vjp(q_left[n], left_isoclinic_vjp(v_R @ wp.transpose(Rr)))
    v_q_right[n] = normalize_vjp(q_right[n], right_isoclinic_vjp(wp.transpose(L) @ v_R))


@wp.kernel
def time_variance_fwd(
    offset: int,
    scales: wp.array(dtype=wp.vec4),
    q_left: wp.array(dtype=wp.vec4),
    q_right: wp.array(dtype=wp.vec4),
    time_vars: wp.array(dtype=float),
):
    # W = Sigma4[3, 3] alone: |last row of M = R4 S|^2, that row being L(q_l)'s last row times R(q_r)
    n = wp.tid() + offset
    L = left_isoclinic(wp.normalize(q_left[n]))
    Rr = right_isoclinic(wp.normalize(q_right[n]))
    s = scales[n]
    W = float(0.0)
    for j in range(4):
        m = float(0.0)
        for i in range(4):
            m += L[3, i] * Rr[i, j]
        m *= s[j]
        W += m * m
    time_vars[n] = wp.max(W, TIME_VARIANCE_MIN)


def live_at_times(
    times: torch.Tensor,
    means: torch.Tensor,
    scales: torch.Tensor,
    q_left: torch.Tensor,
    q_right: torch.Tensor,
    opacities: torch.Tensor,
    min_visible: float,
) -> torch.Tensor:
    """Sorted indices of the Gaussians whose opacity x temporal weight reaches `min_visible` at one
    of `times` (T,) at least (not differentiable: it only chooses what stage 1 and 2 compute).
    Needs only W, a fraction of stage 1's work, so the rest of slicing runs on these alone."""
    with torch.no_grad():
        N, dev = scales.shape[0], scales.device
        time_vars = torch.empty((N,), dtype=torch.float32, device=dev)
        A = warp_runtime.array
        f = lambda x: x.detach().contiguous().float()  # noqa: E731
        warp_runtime.launch(
            time_variance_fwd,
            N,
            [A(f(scales), wp.vec4), A(f(q_left), wp.vec4), A(f(q_right), wp.vec4)],
            [A(time_vars)],
            device=dev,
        )
        dt = times.float()[:, None] - means.detach()[:, 3].float()[None]
        visible = opacities.detach().float()[None] * torch.exp(-0.5 * dt * dt / time_vars[None])
        return (visible >= min_visible).any(dim=0).nonzero().flatten()


class _Covariance4D(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scales, q_left, q_right):
        N = scales.shape[0]
        dev = scales.device
        covars3 = torch.empty((N, 3, 3), dtype=torch.float32, device=dev)
        velocities = torch.empty((N, 3), dtype=torch.float32, device=dev)
        time_vars = torch.empty((N,), dtype=torch.float32, device=dev)
        A = warp_runtime.array
        warp_runtime.launch(
            covariance_4d_fwd,
            N,
            [A(scales, wp.vec4), A(q_left, wp.vec4), A(q_right, wp.vec4)],
            [A(covars3, wp.mat33), A(velocities, wp.vec3), A(time_vars)],
            device=dev,
        )
        ctx.save_for_backward(scales, q_left, q_right)
        return covars3, velocities, time_vars

    @staticmethod
    def backward(ctx, v_covars3, v_velocities, v_time_vars):
        scales, q_left, q_right = ctx.saved_tensors
        N = scales.shape[0]
        dev = scales.device

        v_covars3 = warp_runtime.grad_or_zeros(v_covars3, (N, 3, 3), dev)
        v_velocities = warp_runtime.grad_or_zeros(v_velocities, (N, 3), dev)
        v_time_vars = warp_runtime.grad_or_zeros(v_time_vars, (N,), dev)
        v_scales, v_ql, v_qr = torch.empty_like(scales), torch.empty_like(q_left), torch.empty_like(q_right)
        A = warp_runtime.array
        warp_runtime.launch(
            covariance_4d_bwd,
            N,
            [
                A(scales, wp.vec4),
                A(q_left, wp.vec4),
                A(q_right, wp.vec4),
                A(v_covars3, wp.mat33),
                A(v_velocities, wp.vec3),
                A(v_time_vars),
            ],
            [A(v_scales, wp.vec4), A(v_ql, wp.vec4), A(v_qr, wp.vec4)],
            device=dev,
        )
        return v_scales, v_ql, v_qr


def covariance_4d(
    scales: torch.Tensor, q_left: torch.Tensor, q_right: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Time-independent part of slicing: (N, 4) activated scales and (N, 4) wxyz left/right
    quaternions (normalised here) -> Sigma3 (N, 3, 3), velocity V/W (N, 3), W (N,)."""
    return _Covariance4D.apply(scales.contiguous().float(), q_left.contiguous().float(), q_right.contiguous().float())


# ---------------------------------------------------------------------------------------------
# Stage 2: positions and temporal weights at each requested time
# ---------------------------------------------------------------------------------------------


@wp.kernel
def slice_at_times_fwd(
    offset: int,
    num_gaussians: int,
    times: wp.array(dtype=float),
    means: wp.array(dtype=wp.vec4),
    velocities: wp.array(dtype=wp.vec3),
    time_vars: wp.array(dtype=float),
    means3: wp.array(dtype=wp.vec3),
    weights: wp.array(dtype=float),
):
    tid = wp.tid() + offset
    k = tid / num_gaussians
    n = tid - k * num_gaussians
    mu = means[n]
    dt = times[k] - mu[3]
    means3[tid] = wp.vec3(mu[0], mu[1], mu[2]) + velocities[n] * dt
    weights[tid] = wp.exp(-0.5 * dt * dt / time_vars[n])


@wp.kernel
def slice_at_times_bwd(
    offset: int,
    num_times: int,
    times: wp.array(dtype=float),
    means: wp.array(dtype=wp.vec4),
    velocities: wp.array(dtype=wp.vec3),
    time_vars: wp.array(dtype=float),
    v_means3: wp.array(dtype=wp.vec3),
    v_weights: wp.array(dtype=float),
    v_means: wp.array(dtype=wp.vec4),
    v_velocities: wp.array(dtype=wp.vec3),
    v_time_vars: wp.array(dtype=float),
):
    # one thread per Gaussian looping over the times: sums without atomics, deterministic
    n = wp.tid() + offset
    N = v_means.shape[0]
    mu = means[n]
    vel = velocities[n]
    W = time_vars[n]
    g_xyz = wp.vec3(0.0)
    g_t = float(0.0)
    g_vel = wp.vec3(0.0)
    g_W = float(0.0)
    for k in range(num_times):
        dt = times[k] - mu[3]
        g_mean3 = v_means3[k * N + n]
        g_weight = v_weights[k * N + n] * wp.exp(-0.5 * dt * dt / W)  # v_weight * weight
        g_xyz += g_mean3
        g_vel += g_mean3 * dt
        g_t += -wp.dot(g_mean3, vel) + g_weight * dt / W
        g_W += g_weight * 0.5 * dt * dt / (W * W)
    v_means[n] = wp.vec4(g_xyz[0], g_xyz[1], g_xyz[2], g_t)
    v_velocities[n] = g_vel
    v_time_vars[n] = g_W


class _SliceAtTimes(torch.autograd.Function):
    @staticmethod
    def forward(ctx, times, means, velocities, time_vars):
        T, N = times.shape[0], means.shape[0]
        dev = means.device
        means3 = torch.empty((T, N, 3), dtype=torch.float32, device=dev)
        weights = torch.empty((T, N), dtype=torch.float32, device=dev)
        A = warp_runtime.array
        warp_runtime.launch(
            slice_at_times_fwd,
            T * N,
            [N, A(times), A(means, wp.vec4), A(velocities, wp.vec3), A(time_vars)],
            [A(means3, wp.vec3), A(weights)],
            device=dev,
        )
        ctx.save_for_backward(times, means, velocities, time_vars)
        return means3, weights

    @staticmethod
    def backward(ctx, v_means3, v_weights):
        times, means, velocities, time_vars = ctx.saved_tensors
        T, N = times.shape[0], means.shape[0]
        dev = means.device

        v_means3 = warp_runtime.grad_or_zeros(v_means3, (T, N, 3), dev)
        v_weights = warp_runtime.grad_or_zeros(v_weights, (T, N), dev)
        v_means, v_vel, v_W = torch.empty_like(means), torch.empty_like(velocities), torch.empty_like(time_vars)
        A = warp_runtime.array
        warp_runtime.launch(
            slice_at_times_bwd,
            N,
            [T, A(times), A(means, wp.vec4), A(velocities, wp.vec3), A(time_vars), A(v_means3, wp.vec3), A(v_weights)],
            [A(v_means, wp.vec4), A(v_vel, wp.vec3), A(v_W)],
            device=dev,
        )
        return None, v_means, v_vel, v_W


def slice_at_times(
    times: torch.Tensor, means: torch.Tensor, velocities: torch.Tensor, time_vars: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Time-dependent part of slicing: (T,) times, (N, 4) xyzt means and stage-1 outputs ->
    positions (T, N, 3) and temporal weights exp(-0.5 (t - mu_t)^2 / W) (T, N)."""
    f = lambda x: x.contiguous().float()  # noqa: E731
    return _SliceAtTimes.apply(f(times), f(means), f(velocities), f(time_vars))
