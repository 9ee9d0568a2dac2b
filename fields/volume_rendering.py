"""Volume rendering of packed ray samples (NeRF quadrature), as a Warp kernel pair.

Samples are packed per ray (CSR): ray r owns samples ray_offsets[r] .. ray_offsets[r + 1] - 1,
ordered front to back, each an interval [t_start, t_end) with a density sigma and a colour.
Per ray, front to back: alpha_i = 1 - exp(-sigma_i (t_end - t_start)), weight w_i = T_i alpha_i
with transmittance T_i = prod_{j<i} (1 - alpha_j); colour = sum w_i c_i, opacity = sum w_i,
depth = sum w_i (t_start + t_end) / 2. A ray stops before a sample once T < 1e-4 (early
termination, as Instant-NGP and nerfacc); later samples contribute nothing and get no gradient.

Backward, one thread per ray, no atomics: with g_i = dL/dcolour . c_i + dL/dopacity + dL/ddepth m_i,
dL/dc_i = w_i dL/dcolour and dL/dsigma_i = delta_i (T_(i+1) g_i - sum_{j>i} w_j g_j), where the
suffix sum is the ray's total minus a running prefix (nerfacc's formulation).
"""

from __future__ import annotations

import torch
import warp as wp

from splat.renderer import warp_runtime
from splat.renderer.constants import TRANSMITTANCE_MIN

wp.set_module_options(warp_runtime.KERNEL_OPTIONS)


@wp.kernel
def composite_rays_fwd(
    offset: int,
    ray_offsets: wp.array(dtype=int),
    sigmas: wp.array(dtype=float),
    rgbs: wp.array(dtype=wp.vec3),
    t_starts: wp.array(dtype=float),
    t_ends: wp.array(dtype=float),
    colors: wp.array(dtype=wp.vec3),
    opacities: wp.array(dtype=float),
    depths: wp.array(dtype=float),
    used: wp.array(dtype=int),
):
    r = wp.tid() + offset
    start = ray_offsets[r]
    end = ray_offsets[r + 1]
    T = float(1.0)
    c = wp.vec3(0.0)
    d = float(0.0)
    stop = end
    for i in range(start, end):
        if T < TRANSMITTANCE_MIN:
            stop = i
            break
        alpha = 1.0 - wp.exp(-sigmas[i] * (t_ends[i] - t_starts[i]))
        w = T * alpha
        c += w * rgbs[i]
        d += w * 0.5 * (t_starts[i] + t_ends[i])
        T *= 1.0 - alpha
    colors[r] = c
    opacities[r] = 1.0 - T
    depths[r] = d
    used[r] = stop


@wp.kernel
def composite_rays_bwd(
    offset: int,
    ray_offsets: wp.array(dtype=int),
    used: wp.array(dtype=int),
    sigmas: wp.array(dtype=float),
    rgbs: wp.array(dtype=wp.vec3),
    t_starts: wp.array(dtype=float),
    t_ends: wp.array(dtype=float),
    v_colors: wp.array(dtype=wp.vec3),
    v_opacities: wp.array(dtype=float),
    v_depths: wp.array(dtype=float),
    v_sigmas: wp.array(dtype=float),
    v_rgbs: wp.array(dtype=wp.vec3),
):
    r = wp.tid() + offset
    start = ray_offsets[r]
    stop = used[r]
    gc = v_colors[r]
    go = v_opacities[r]
    gd = v_depths[r]
    # pass 1: the ray's total of w_j g_j
    T = float(1.0)
    total = float(0.0)
    for i in range(start, stop):
        alpha = 1.0 - wp.exp(-sigmas[i] * (t_ends[i] - t_starts[i]))
        g = wp.dot(gc, rgbs[i]) + go + gd * 0.5 * (t_starts[i] + t_ends[i])
        total += T * alpha * g
        T *= 1.0 - alpha
    # pass 2: per-sample gradients with the suffix sum = total - prefix
    T = float(1.0)
    prefix = float(0.0)
    for i in range(start, stop):
        delta = t_ends[i] - t_starts[i]
        alpha = 1.0 - wp.exp(-sigmas[i] * delta)
        w = T * alpha
        g = wp.dot(gc, rgbs[i]) + go + gd * 0.5 * (t_starts[i] + t_ends[i])
        prefix += w * g
        T_next = T * (1.0 - alpha)
        v_sigmas[i] = delta * (T_next * g - (total - prefix))
        v_rgbs[i] = w * gc
        T = T_next
    for i in range(stop, ray_offsets[r + 1]):
        v_sigmas[i] = 0.0
        v_rgbs[i] = wp.vec3(0.0)


class _CompositeRays(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ray_offsets, sigmas, rgbs, t_starts, t_ends):
        R = ray_offsets.shape[0] - 1
        dev = sigmas.device
        colors = torch.empty((R, 3), dtype=torch.float32, device=dev)
        opacities = torch.empty((R,), dtype=torch.float32, device=dev)
        depths = torch.empty((R,), dtype=torch.float32, device=dev)
        used = torch.empty((R,), dtype=torch.int32, device=dev)
        A = warp_runtime.array
        warp_runtime.launch(
            composite_rays_fwd,
            R,
            [A(ray_offsets), A(sigmas), A(rgbs, wp.vec3), A(t_starts), A(t_ends)],
            [A(colors, wp.vec3), A(opacities), A(depths), A(used)],
            device=dev,
        )
        ctx.save_for_backward(ray_offsets, used, sigmas, rgbs, t_starts, t_ends)
        ctx.mark_non_differentiable(used)
        return colors, opacities, depths, used

    @staticmethod
    def backward(ctx, v_colors, v_opacities, v_depths, _v_used):
        ray_offsets, used, sigmas, rgbs, t_starts, t_ends = ctx.saved_tensors
        R = ray_offsets.shape[0] - 1
        dev = sigmas.device

        v_colors = warp_runtime.grad_or_zeros(v_colors, (R, 3), dev)
        v_opacities = warp_runtime.grad_or_zeros(v_opacities, (R,), dev)
        v_depths = warp_runtime.grad_or_zeros(v_depths, (R,), dev)
        v_sigmas, v_rgbs = torch.empty_like(sigmas), torch.empty_like(rgbs)
        A = warp_runtime.array
        warp_runtime.launch(
            composite_rays_bwd,
            R,
            [
                A(ray_offsets),
                A(used),
                A(sigmas),
                A(rgbs, wp.vec3),
                A(t_starts),
                A(t_ends),
                A(v_colors, wp.vec3),
                A(v_opacities),
                A(v_depths),
            ],
            [A(v_sigmas), A(v_rgbs, wp.vec3)],
            device=dev,
        )
        return None, v_sigmas, v_rgbs, None, None


def composite_rays(
    ray_offsets: torch.Tensor, sigmas: torch.Tensor, rgbs: torch.Tensor, t_starts: torch.Tensor, t_ends: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Volume-render packed samples. ray_offsets (R+1,) int, sigmas (S,) >= 0, rgbs (S, 3),
    t_starts / t_ends (S,). Returns colours (R, 3), opacities (R,), expected depths (R,) and the
    index one past each ray's last used sample (R,) int32. Differentiable w.r.t. sigmas and rgbs."""
    S = sigmas.shape[0]
    if ray_offsets.dim() != 1 or ray_offsets.numel() < 1 or int(ray_offsets[-1]) != S or int(ray_offsets[0]) != 0:
        raise ValueError(f"ray_offsets: expected (R+1,) offsets from 0 to the sample count {S}")
    if rgbs.shape != (S, 3) or t_starts.shape != (S,) or t_ends.shape != (S,):
        raise ValueError("rgbs (S, 3), t_starts (S,) and t_ends (S,) must match sigmas (S,)")
    f = lambda x: x.contiguous().float()  # noqa: E731
    return _CompositeRays.apply(ray_offsets.to(torch.int32).contiguous(), f(sigmas), f(rgbs), f(t_starts), f(t_ends))


def composite_rays_torch(ray_offsets, sigmas, rgbs, t_starts, t_ends):
    """Pure-torch twin (any float dtype), ray by ray, with the same early-termination rule."""
    colors, opacities, depths = [], [], []
    for r in range(ray_offsets.numel() - 1):
        T = sigmas.new_ones(())
        c, d = rgbs.new_zeros(3), sigmas.new_zeros(())
        for i in range(int(ray_offsets[r]), int(ray_offsets[r + 1])):
            if T.item() < 1e-4:
                break
            alpha = 1 - torch.exp(-sigmas[i] * (t_ends[i] - t_starts[i]))
            w = T * alpha
            c = c + w * rgbs[i]
            d = d + w * 0.5 * (t_starts[i] + t_ends[i])
            T = T * (1 - alpha)
        colors.append(c), opacities.append(1 - T), depths.append(d)
    return torch.stack(colors), torch.stack(opacities), torch.stack(depths)
