"""The Gaussians a browser draws itself (viser's `add_gaussian_splats`): world-space centres,
3x3 covariances, opacities and one RGB colour per splat, for a budget of at most `max_splats`.

viser's client sorts (WASM) and rasterises (WebGL) these at the browser's frame rate. It has no
spherical harmonics, so colours are evaluated on the server for one viewpoint ("view-baked") and
re-sent when the camera settles somewhere else (viewer/app.py decides when). Covariances travel as
float16 and colours/opacities as uint8 (32 bytes a splat).

Which splats fit the budget is decided by contribution: each Gaussian's blending weight (opacity x
visible projected area, occlusion included) summed over a subset of the training cameras.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import torch

from splat.camera import Camera
from splat.gaussians import activated, rgb_to_sh
from splat.scene import GaussianScene

from . import DEFAULT_MAX_SPLATS

SCORE_CAMERAS = 16  # training cameras used to score contributions (evenly spaced subset)
SCORE_SIDE = 256  # ...rendered at this many pixels on the long side


@dataclasses.dataclass
class BrowserSplats:
    """Gaussians as the browser gets them (float32 numpy arrays, world frame)."""

    centers: np.ndarray  # (M, 3)
    covariances: np.ndarray  # (M, 3, 3)
    opacities: np.ndarray  # (M, 1) in [0, 1]
    sh: torch.Tensor  # (M, K, 3) SH coefficients, for view-baked colours
    sh_degree: int
    total: int  # Gaussians in the scene (before the budget)

    @functools.cached_property
    def centre(self) -> np.ndarray:
        return self.centers.mean(0) if self.count else np.zeros(3, np.float32)

    @property
    def count(self) -> int:
        return int(self.centers.shape[0])

    def colors(self, campos: np.ndarray | None) -> np.ndarray:
        """(M, 3) RGB in [0, 1] seen from `campos` (DC only when None or the scene has no SH)."""
        return view_colors(self.sh, torch.from_numpy(self.centers), campos, self.sh_degree).numpy()


def view_colors(sh: torch.Tensor, means: torch.Tensor, campos, degree: int) -> torch.Tensor:
    """Colours of SH coefficients `sh` (N, K, 3) seen from `campos` (3,), as the rasterizer computes
    them (max(SH(dir) + 0.5, 0), clipped to 1); `campos` None -> the DC term only."""
    from splat.renderer.spherical_harmonics import sh_colors

    if campos is None:
        degree = 0
    n = means.shape[0]
    cam = torch.as_tensor(np.asarray(campos if campos is not None else (0.0, 0.0, 0.0)), dtype=torch.float32).reshape(
        1, 3
    )
    radii = torch.ones(1, n, 2, dtype=torch.int32)
    rgb = sh_colors(degree, means.float().contiguous(), cam, sh.float().contiguous(), radii)[0]
    return rgb.clamp(0, 1)


def world_gaussians(scene: GaussianScene, time: float | None = None) -> dict[str, torch.Tensor]:
    """The scene's Gaussians in 3D: centres (N, 3), covariances (N, 3, 3), opacities (N,) and SH
    (N, K, 3), on the CPU. A 4D scene is sliced at `time` (default 0): positions move with their
    velocity and opacities fade by the temporal weight, as the rasterizer does; a scene of moving 3D
    Gaussians (splat/motion.py) is moved to `time`."""
    if scene.bases is not None:
        scene = scene.at_time(0.0 if time is None else float(time))
    p = activated({k: v.detach().cpu().float() for k, v in scene.splats.items()})
    sh, opacities = p["colors"], p["opacities"]
    if scene.is_dynamic:
        from splat.renderer.slicing import covariance_4d, slice_at_times

        covars, velocities, time_vars = covariance_4d(p["scales"], p["quats_left"], p["quats_right"])
        t = torch.tensor([0.0 if time is None else float(time)])
        means, weights = slice_at_times(t, p["means"], velocities, time_vars)
        return {"means": means[0], "covars": covars, "opacities": opacities * weights[0], "sh": sh}
    from splat.renderer.torch_impl import covar_from_quat_scale

    covars = covar_from_quat_scale(p["quats"], p["scales"])
    return {"means": p["means"], "covars": covars, "opacities": opacities, "sh": sh}


def contribution(g: dict[str, torch.Tensor], cameras: list[Camera], max_side: int = SCORE_SIDE) -> torch.Tensor:
    """Score (N,) per Gaussian: its blending weight (alpha x transmittance) summed over the pixels
    of up to SCORE_CAMERAS training cameras at <= `max_side` pixels, i.e. its opacity x visible
    projected area, occlusion included. It is the gradient of the rendered image with respect to
    a constant one-channel colour per Gaussian (d/dc_i sum_p sum_j c_j alpha_j T_j = sum_p alpha_i T_i),
    so splat's own rasterizer computes it. Without cameras, views from around the bounds are used."""
    from splat.renderer.rasterization import rasterize

    cams = cameras or orbit_cameras(g["means"])
    pick = sorted(set(np.linspace(0, len(cams) - 1, min(SCORE_CAMERAS, len(cams))).round().astype(int).tolist()))
    means, covars, opac = g["means"].contiguous(), g["covars"].contiguous(), g["opacities"].contiguous()
    score = torch.zeros_like(opac)
    for k in pick:
        cam = cams[k]
        f = min(1.0, max_side / max(cam.width, cam.height))
        small = cam.resized(max(8, round(cam.width * f)), max(8, round(cam.height * f)))
        w, h, K = small.width, small.height, torch.tensor(small.K, dtype=torch.float32)
        ones = torch.ones(means.shape[0], 1, requires_grad=True)
        image, _, _ = rasterize(
            means, None, None, opac, ones, torch.from_numpy(cam.viewmat).float()[None], K[None], w, h, covars=covars
        )
        (grad,) = torch.autograd.grad(image.sum(), ones)
        score += grad[:, 0] / (w * h)
    return score


def orbit_cameras(means: torch.Tensor, n: int = 8) -> list[Camera]:
    """Views from around and above the centres' robust bounds (for scenes without cameras)."""
    lo, hi = torch.quantile(means[torch.randperm(means.shape[0])[:100_000]], torch.tensor([0.02, 0.98]), dim=0)
    centre, radius = ((lo + hi) / 2).tolist(), max(float((hi - lo).norm()), 1e-3)
    cams = []
    for k in range(n):
        a = 2 * math.pi * k / n
        eye = (centre[0] + radius * math.cos(a), centre[1] + radius * math.sin(a), centre[2] + 0.5 * radius)
        cams.append(Camera.look_at(eye, centre, width=SCORE_SIDE, height=SCORE_SIDE, fov_x=60))
    return cams


def select(g: dict[str, torch.Tensor], cameras: list[Camera], max_splats: int) -> torch.Tensor:
    """Indices of the `max_splats` Gaussians that contribute most (all of them when they fit),
    dropping invisible ones (opacity < 1/255, which the browser would draw as nothing)."""
    visible = g["opacities"] >= 1 / 255
    if int(visible.sum()) <= max_splats:
        return visible.nonzero().flatten()
    score = torch.where(visible, contribution(g, cameras), torch.full_like(g["opacities"], -1.0))
    k = min(max_splats, int(visible.sum()))
    return torch.topk(score, max(k, 1)).indices.sort().values


def browser_splats(
    scene: GaussianScene, max_splats: int = DEFAULT_MAX_SPLATS, time: float | None = None
) -> BrowserSplats:
    """The scene's Gaussians (at `time` for 4D scenes) that the browser will draw."""
    g = world_gaussians(scene, time)
    ids = select(g, scene.cameras, max_splats)
    return BrowserSplats(
        centers=g["means"][ids].numpy().astype(np.float32),
        covariances=g["covars"][ids].numpy().astype(np.float32),
        opacities=g["opacities"][ids, None].clamp(0, 1).numpy().astype(np.float32),
        sh=g["sh"][ids],
        sh_degree=scene.sh_degree,
        total=g["means"].shape[0],
    )


def baked_scene(
    scene: GaussianScene, campos: np.ndarray | None, max_splats: int = DEFAULT_MAX_SPLATS, quantize: bool = True
) -> GaussianScene:
    """A GaussianScene (SH degree 0) holding what the browser draws: the budgeted Gaussians with
    colours baked for `campos` (None: DC only), colours and opacities rounded to uint8 as on the
    wire. Rendering it with our rasterizer measures what client-side drawing costs in quality."""
    if scene.is_dynamic:
        raise ValueError("baked_scene: static scenes only (slice a 4D scene first)")
    s = {k: v.detach().cpu().float() for k, v in scene.splats.items()}
    g = world_gaussians(scene)
    ids = select(g, scene.cameras, max_splats)
    rgb = view_colors(g["sh"][ids], g["means"][ids], campos, scene.sh_degree)
    opac = g["opacities"][ids].clamp(1e-6, 1 - 1e-6)
    if quantize:
        rgb = torch.round(rgb * 255) / 255
        opac = (torch.round(opac * 255) / 255).clamp(1e-6, 1 - 1e-6)
    splats = {
        "means": s["means"][ids],
        "scales": s["scales"][ids],
        "quats": s["quats"][ids],
        "opacities": torch.logit(opac),
        "sh0": rgb_to_sh(rgb)[:, None, :],
        "shN": torch.zeros(len(ids), 0, 3),
    }
    return GaussianScene(splats, scene.cameras, source=f"{scene.source} (baked)", eps2d=scene.eps2d)
