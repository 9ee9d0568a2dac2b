"""Projection of 3D Gaussians to every camera: EWA splatting with culling, as a Warp kernel pair.

Forward, one thread per (camera, Gaussian): 3D covariance from quat + scale (or given covariance),
world -> camera, near/far culling, pinhole or orthographic EWA projection, eps2d low-pass blur,
conic, optional antialiasing compensation, opacity-aware bounding box and off-screen culling.

Backward, one thread per Gaussian looping over cameras: no atomics, deterministic, and the
quat/scale -> covariance VJP runs once per Gaussian on the camera-summed covariance gradient.
"""

from __future__ import annotations

import torch
import warp as wp

from . import warp_runtime
from .gaussian_math import (
    ALPHA_THRESHOLD,
    MAX_EXTENT_SIGMAS,
    blurred_conic,
    blurred_conic_vjp,
    covar_from_quat_scale,
    covar_from_quat_scale_vjp,
    covar_from_triu,
    covar_from_triu_vjp,
    extent_sigmas,
    project,
    project_vjp,
    vec6,
    view_rotation,
    view_translation,
)
from .validation import CAMERA_MODEL_NAMES, CameraModel

wp.set_module_options(warp_runtime.KERNEL_OPTIONS)

CAMERA_MODELS = {name: k for k, name in enumerate(CAMERA_MODEL_NAMES)}  # the kernels' camera model ids


@wp.struct
class Gaussians3D:
    means: wp.array(dtype=wp.vec3)
    quats: wp.array(dtype=wp.vec4)  # unused when use_covars
    scales: wp.array(dtype=wp.vec3)  # unused when use_covars
    covars: wp.array(dtype=vec6)  # upper triangles, used when use_covars
    use_covars: int


@wp.struct
class Cameras:
    viewmats: wp.array(dtype=wp.mat44)  # world to camera, OpenCV axes
    Ks: wp.array(dtype=wp.mat33)
    width: int
    height: int
    ortho: int
    eps2d: float


@wp.func
def world_covariance(gs: Gaussians3D, n: int) -> wp.mat33:
    if gs.use_covars != 0:
        return covar_from_triu(gs.covars[n])
    return covar_from_quat_scale(gs.quats[n], gs.scales[n])


@wp.kernel
def project_gaussians_fwd(
    offset: int,
    gs: Gaussians3D,
    cams: Cameras,
    opacities: wp.array(dtype=float),
    use_opacities: int,
    near_plane: float,
    far_plane: float,
    radius_clip: float,
    calc_compensations: int,
    # outputs, (C * N) each
    radii: wp.array(dtype=wp.vec2i),
    means2d: wp.array(dtype=wp.vec2),
    depths: wp.array(dtype=float),
    conics: wp.array(dtype=wp.vec3),
    compensations: wp.array(dtype=float),
):
    i = wp.tid() + offset
    num_gaussians = gs.means.shape[0]
    cam = i // num_gaussians
    n = i - cam * num_gaussians
    radii[i] = wp.vec2i(0, 0)

    view = cams.viewmats[cam]
    R = view_rotation(view)
    p = R @ gs.means[n] + view_translation(view)
    if p[2] < near_plane or p[2] > far_plane:
        return

    cov_c = R @ world_covariance(gs, n) @ wp.transpose(R)
    mean2d, cov2d = project(p, cov_c, cams.Ks[cam], float(cams.width), float(cams.height), cams.ortho)
    conic, det, compensation = blurred_conic(cov2d, cams.eps2d)
    if not (det > 0.0):
        return

    extent = MAX_EXTENT_SIGMAS
    if use_opacities != 0:
        opacity = opacities[n]
        if calc_compensations != 0:
            opacity = opacity * compensation
        if opacity < ALPHA_THRESHOLD:
            return
        extent = extent_sigmas(opacity)
    # the blurred covariance's diagonal: 1D variances along x and y
    radius_x = wp.ceil(extent * wp.sqrt(cov2d[0, 0] + cams.eps2d))
    radius_y = wp.ceil(extent * wp.sqrt(cov2d[1, 1] + cams.eps2d))
    if radius_x <= radius_clip and radius_y <= radius_clip:
        return
    if (
        mean2d[0] + radius_x <= 0.0
        or mean2d[0] - radius_x >= float(cams.width)
        or mean2d[1] + radius_y <= 0.0
        or mean2d[1] - radius_y >= float(cams.height)
    ):
        return

    radii[i] = wp.vec2i(int(radius_x), int(radius_y))
    means2d[i] = mean2d
    depths[i] = p[2]
    conics[i] = conic
    compensations[i] = compensation


@wp.kernel
def project_gaussians_bwd(
    offset: int,
    gs: Gaussians3D,
    cams: Cameras,
    radii: wp.array(dtype=wp.vec2i),
    v_means2d: wp.array(dtype=wp.vec2),
    v_depths: wp.array(dtype=float),
    v_conics: wp.array(dtype=wp.vec3),
    v_compensations: wp.array(dtype=float),
    use_v_compensations: int,
    # outputs, (N) each
    v_means: wp.array(dtype=wp.vec3),
    v_quats: wp.array(dtype=wp.vec4),
    v_scales: wp.array(dtype=wp.vec3),
    v_covars: wp.array(dtype=vec6),
):
    n = wp.tid() + offset
    num_gaussians = gs.means.shape[0]
    cov = world_covariance(gs, n)
    v_mean = wp.vec3(0.0)
    v_cov = wp.mat33(0.0)
    for cam in range(cams.viewmats.shape[0]):
        i = cam * num_gaussians + n
        r = radii[i]
        if r[0] == 0 and r[1] == 0:
            continue
        view = cams.viewmats[cam]
        R = view_rotation(view)
        p = R @ gs.means[n] + view_translation(view)
        cov_c = R @ cov @ wp.transpose(R)
        K = cams.Ks[cam]
        mean2d, cov2d = project(p, cov_c, K, float(cams.width), float(cams.height), cams.ortho)
        v_comp = float(0.0)
        if use_v_compensations != 0:
            v_comp = v_compensations[i]
        v_cov2d = blurred_conic_vjp(cov2d, cams.eps2d, v_conics[i], v_comp)
        v_p, v_cov_c = project_vjp(
            p, cov_c, K, float(cams.width), float(cams.height), cams.ortho, v_means2d[i], v_cov2d
        )
        v_p = v_p + wp.vec3(0.0, 0.0, v_depths[i])
        v_mean += wp.transpose(R) @ v_p
        v_cov += wp.transpose(R) @ v_cov_c @ R
    v_means[n] = v_mean
    if gs.use_covars != 0:
        v_covars[n] = covar_from_triu_vjp(v_cov)
    else:
        v_q, v_s = covar_from_quat_scale_vjp(gs.quats[n], gs.scales[n], v_cov)
        v_quats[n] = v_q
        v_scales[n] = v_s


def _placeholder(like: torch.Tensor, width: int) -> torch.Tensor:
    """A one-row stand-in for an optional input the kernel will not read."""
    return torch.zeros((1, width), dtype=like.dtype, device=like.device)


def _structs(means, quats, scales, covars, use_covars, viewmats, Ks, width, height, ortho, eps2d):
    gs = Gaussians3D()
    gs.means = warp_runtime.array(means, wp.vec3)
    gs.quats = warp_runtime.array(quats, wp.vec4)
    gs.scales = warp_runtime.array(scales, wp.vec3)
    gs.covars = warp_runtime.array(covars, vec6)
    gs.use_covars = int(use_covars)
    cams = Cameras()
    cams.viewmats = warp_runtime.array(viewmats, wp.mat44)
    cams.Ks = warp_runtime.array(Ks, wp.mat33)
    cams.width, cams.height, cams.ortho, cams.eps2d = width, height, ortho, eps2d
    return gs, cams


class _FullyFusedProjection(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        means,
        quats,
        scales,
        covars,
        opacities,
        viewmats,
        Ks,
        width,
        height,
        eps2d,
        near_plane,
        far_plane,
        radius_clip,
        calc_compensations,
        camera_model,
    ):
        N = means.shape[0]
        C = viewmats.shape[0]
        dev = means.device
        use_covars = covars is not None
        if use_covars:
            quats, scales = _placeholder(means, 4), _placeholder(means, 3)
        else:
            covars = _placeholder(means, 6)
        opac = opacities if opacities is not None else _placeholder(means, 1).view(-1)
        radii = torch.empty((C, N, 2), dtype=torch.int32, device=dev)
        means2d = torch.zeros((C, N, 2), dtype=torch.float32, device=dev)
        depths = torch.zeros((C, N), dtype=torch.float32, device=dev)
        conics = torch.zeros((C, N, 3), dtype=torch.float32, device=dev)
        compensations = torch.zeros((C, N), dtype=torch.float32, device=dev)
        ortho = CAMERA_MODELS[camera_model]
        gs, cams = _structs(means, quats, scales, covars, use_covars, viewmats, Ks, width, height, ortho, eps2d)
        A = warp_runtime.array
        warp_runtime.launch(
            project_gaussians_fwd,
            C * N,
            [
                gs,
                cams,
                A(opac),
                int(opacities is not None),
                near_plane,
                far_plane,
                radius_clip,
                int(calc_compensations),
            ],
            [A(radii, wp.vec2i), A(means2d, wp.vec2), A(depths), A(conics, wp.vec3), A(compensations)],
            device=dev,
        )
        ctx.save_for_backward(means, quats, scales, covars, viewmats, Ks, radii)
        ctx.config = (width, height, eps2d, ortho, calc_compensations, use_covars)
        ctx.mark_non_differentiable(radii)
        return radii, means2d, depths, conics, (compensations if calc_compensations else None)

    @staticmethod
    def backward(ctx, _v_radii, v_means2d, v_depths, v_conics, v_compensations):
        means, quats, scales, covars, viewmats, Ks, radii = ctx.saved_tensors
        width, height, eps2d, ortho, calc_compensations, use_covars = ctx.config
        N = means.shape[0]
        C = viewmats.shape[0]
        dev = means.device

        v_means2d = warp_runtime.grad_or_zeros(v_means2d, (C, N, 2), dev)
        v_depths = warp_runtime.grad_or_zeros(v_depths, (C, N), dev)
        v_conics = warp_runtime.grad_or_zeros(v_conics, (C, N, 3), dev)
        use_v_comp = calc_compensations and v_compensations is not None
        v_comp = v_compensations.contiguous().float() if use_v_comp else _placeholder(means, 1).view(-1)
        v_means = torch.zeros_like(means)
        v_quats = torch.zeros_like(quats)
        v_scales = torch.zeros_like(scales)
        v_covars = torch.zeros_like(covars)
        gs, cams = _structs(means, quats, scales, covars, use_covars, viewmats, Ks, width, height, ortho, eps2d)
        A = warp_runtime.array
        warp_runtime.launch(
            project_gaussians_bwd,
            N,
            [
                gs,
                cams,
                A(radii, wp.vec2i),
                A(v_means2d, wp.vec2),
                A(v_depths),
                A(v_conics, wp.vec3),
                A(v_comp),
                int(use_v_comp),
            ],
            [A(v_means, wp.vec3), A(v_quats, wp.vec4), A(v_scales, wp.vec3), A(v_covars, vec6)],
            device=dev,
        )
        needs = ctx.needs_input_grad
        return (
            v_means if needs[0] else None,
            v_quats if (needs[1] and not use_covars) else None,
            v_scales if (needs[2] and not use_covars) else None,
            v_covars if (needs[3] and use_covars) else None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        )


def fully_fused_projection(
    means: torch.Tensor,
    quats: torch.Tensor | None,
    scales: torch.Tensor | None,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    covars: torch.Tensor | None = None,
    opacities: torch.Tensor | None = None,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    calc_compensations: bool = False,
    camera_model: CameraModel = "pinhole",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Project N Gaussians into C cameras (float32, contiguous inputs on one device).

    Args:
        means (N, 3), quats (N, 4) wxyz, scales (N, 3) activated; or covars (N, 6) upper triangle
        (xx, xy, xz, yy, yz, zz) in place of quats and scales.
        viewmats (C, 4, 4) world-to-camera (OpenCV axes), Ks (C, 3, 3).
        opacities (N,): when given, bounding boxes are opacity-aware (tighter) and Gaussians whose
        opacity (times compensation in antialiased mode) is below 1/255 are culled.

    Returns:
        radii (C, N, 2) int32, zero where culled; means2d (C, N, 2); depths (C, N) camera z;
        conics (C, N, 3); compensations (C, N) or None. Differentiable w.r.t. means, quats,
        scales and covars.
    """
    if camera_model not in CAMERA_MODELS:
        raise ValueError(f"camera_model: expected one of {sorted(CAMERA_MODELS)}, got {camera_model!r}")
    return _FullyFusedProjection.apply(
        means,
        quats,
        scales,
        covars,
        opacities,
        viewmats,
        Ks,
        int(width),
        int(height),
        float(eps2d),
        float(near_plane),
        float(far_plane),
        float(radius_clip),
        bool(calc_compensations),
        camera_model,
    )
