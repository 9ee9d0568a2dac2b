"""Per-image camera refinement for captures whose structure-from-motion cameras are slightly off.

A phone video has one focal length, yet COLMAP's per-image calibration of the beer capture spreads
it over 1102-1155 px and moves the cameras to match: the can, which holds nearly all the sparse
points, reprojects within a pixel, while the background behind it no longer agrees between views
(the training images that see it fit at 17-22 dB, against 31-42 dB when trained on their own).

Each training image gets a small rigid motion of the world, zero at the start: a rotation vector
and a translation, applied to the Gaussians before that image's render (so the renderer's
gradients for means and rotations reach it; moving the world by T is the camera V becoming V T),
and a log zoom, which resamples the rendered image about the principal point: for a pinhole camera
exactly a focal-length change. The part common to all training images would move the whole scene
against the test cameras, which are not corrected: after every step it is removed (the mean over
the training images is subtracted), so the majority of cameras define the frame. Evaluation
renders the scene as it is, like appearance compensation (train/appearance.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from splat.renderer.torch_impl import left_isoclinic, quat_to_rotmat

LR = 1e-3  # Adam, decaying to LR_FINAL; an image gets a step only when it is rendered
LR_FINAL = 1e-4
START_STEP = 300  # the first renders are blobs: corrections fitted to them would be noise
REFINED_FORMATS = ("colmap",)  # --camera-refine auto: structure-from-motion captures (measured on beer)


def rotvec_to_quat(w: torch.Tensor) -> torch.Tensor:
    """Unit quaternion (wxyz) of rotation vector `w`; smooth (and differentiable) at zero."""
    theta = torch.sqrt((w * w).sum(-1, keepdim=True) + 1e-24)
    # sin(theta / 2) / theta = sinc(theta / 2pi) / 2, finite at theta = 0
    return torch.cat([torch.cos(theta / 2), 0.5 * torch.sinc(theta / (2 * torch.pi)) * w], dim=-1)


def move_gaussians(
    means: torch.Tensor, quats: torch.Tensor, rotvec: torch.Tensor, translation: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Means and rotations moved by the rigid motion x -> R(rotvec) x + translation (world axes)."""
    q = rotvec_to_quat(rotvec)
    moved = means @ quat_to_rotmat(q).T + translation
    return moved, quats @ left_isoclinic(q).T  # rotations compose on the left


def zoom_image(image: torch.Tensor, K: torch.Tensor, log_zoom: torch.Tensor) -> torch.Tensor:
    """image (H, W, C) as a camera with focal lengths x exp(log_zoom) sees it: pixel u of the
    result is pixel c + (u - c) / zoom of the input (c the principal point; pixel centres at
    +0.5). Beyond the input's border (a zoom below 1) the edge pixels repeat."""
    H, W = image.shape[:2]
    zoom = torch.exp(log_zoom)
    u = torch.arange(W, dtype=image.dtype, device=image.device) + 0.5
    v = torch.arange(H, dtype=image.dtype, device=image.device) + 0.5
    us = K[0, 2] + (u - K[0, 2]) / zoom
    vs = K[1, 2] + (v - K[1, 2]) / zoom
    gy, gx = torch.meshgrid(2 * vs / H - 1, 2 * us / W - 1, indexing="ij")
    grid = torch.stack([gx, gy], dim=-1)[None].to(image.dtype)
    out = F.grid_sample(image.permute(2, 0, 1)[None], grid, align_corners=False, padding_mode="border")
    return out[0].permute(1, 2, 0)


class CameraRefinement:
    def __init__(self, n_images: int, device: torch.device):
        # (n_images, 7): rotation vector (3), translation (3), log zoom (1), per dataset frame
        self.delta = torch.nn.Parameter(torch.zeros(n_images, 7, device=device))
        self.optimizer = torch.optim.Adam([self.delta], lr=LR, eps=1e-15)

    def active(self, step: int) -> bool:
        return step >= START_STEP

    def move(self, params, index: int) -> dict:
        """`params` with means and quats moved for training image `index` (the rest shared)."""
        d = self.delta[index]
        means, quats = move_gaussians(params["means"], params["quats"], d[:3], d[3:6])
        return {**dict(params), "means": means, "quats": quats}

    def zoom(self, image: torch.Tensor, K: torch.Tensor, index: int) -> torch.Tensor:
        return zoom_image(image, K.to(image), self.delta[index, 6])

    def step(self, progress: float, train_indices: list[int]) -> None:
        if self.delta.grad is None:
            return
        for group in self.optimizer.param_groups:
            group["lr"] = LR * (LR_FINAL / LR) ** progress
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():  # no common motion or zoom: that would move the scene, not the cameras
            rows = torch.as_tensor(train_indices, device=self.delta.device)
            self.delta[rows] -= self.delta[rows].mean(dim=0)

    def summary(self) -> dict:
        """The largest corrections so far: rotation (degrees), translation (scene units), zoom."""
        d = self.delta.detach()
        return {
            "rotation_deg": float(d[:, :3].norm(dim=-1).max()) * 180.0 / torch.pi,
            "translation": float(d[:, 3:6].norm(dim=-1).max()),
            "zoom_min": float(torch.exp(d[:, 6].min())),
            "zoom_max": float(torch.exp(d[:, 6].max())),
        }

    def state_dict(self) -> dict:
        return {"delta": self.delta.detach().cpu(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.delta.copy_(state["delta"].to(self.delta.device))
        self.optimizer.load_state_dict(state["optimizer"])
