"""Trained neural fields as scenes: the same `render(...)` as `GaussianScene`, in the dataset's
original frame (the field itself lives in the normalised training frame)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .camera import Camera
from .errors import InputError
from .scene_protocol import camera_batch


class FieldScene:
    """A hash-grid radiance field and its occupancy grid (fields/radiance_field.py), trained in
    the normalised frame of `normalization` (a `splat.datasets.Normalization`), rendered in the
    original frame. A training run's scene holds its live field (identity normalisation)."""

    is_dynamic = False
    time_range = None
    progressive = True  # slow to render: the viewer refines a still view in steps
    splats = None  # no Gaussians (the viewer's browser renderer draws Gaussians only)
    sh_degree = None  # colours come from the field's MLP

    def __init__(self, field, grid, normalization, cameras: list[Camera] | None = None, source: str = ""):
        self.field = field
        self.grid = grid
        self.normalization = normalization
        self.cameras = cameras or []
        self.source = source

    @staticmethod
    def from_checkpoint(state: dict, device: str | torch.device = "cpu", source: str = "") -> FieldScene:
        from splat.datasets import Normalization
        from splat.fields.radiance_field import FieldSpec, RadianceField

        field = RadianceField(FieldSpec(**state["field_spec"]))
        field.load_state_dict(state["field"])
        field = field.to(device)
        grid = field.make_grid(device)
        grid.load_state_dict(state["grid"])
        return FieldScene(field, grid, Normalization.from_dict(state["normalization"]), source=source)

    @property
    def summary(self) -> str:
        kind = "unbounded" if self.field.spec.contract else "bounded"
        return f"hash-grid field ({kind}, {100 * self.grid.occupied_fraction:.1f}% of the occupancy grid occupied)"

    @property
    def device(self) -> torch.device:
        return self.grid.density.device

    @property
    def num_primitives(self) -> int:
        return int(self.grid.occupied.sum())

    def to(self, device: str | torch.device) -> FieldScene:
        field = self.field.to(device)
        grid = field.make_grid(device)
        grid.load_state_dict(self.grid.state_dict())
        return FieldScene(field, grid, self.normalization, self.cameras, self.source)

    def bounds(self, quantile: float = 0.98) -> tuple[np.ndarray, np.ndarray]:
        """The scene box (the inner box for unbounded scenes) in the original frame."""
        b = self.field.spec.bound / self.normalization.scale
        c = np.asarray(self.normalization.center, dtype=np.float64)
        return c - b, c + b

    def render(
        self,
        cameras: Camera | Sequence[Camera],
        outputs: Sequence[str] = ("rgb",),
        background=(0.0, 0.0, 0.0),
        time: float | None = None,
        tile_size: int = 16,
    ) -> dict[str, torch.Tensor]:
        """As `GaussianScene.render`: rgb (over `background`), depth (expected camera z, 0 where
        nothing is hit), alpha; (H, W, C) for one camera, (B, H, W, C) for a list."""
        from splat.fields.radiance_field import render_rays_chunked

        if time is not None:
            raise InputError("time: this scene is static (a neural field); leave time=None")
        single, cams = camera_batch(cameras, outputs)
        bg = torch.as_tensor(background, dtype=torch.float32, device=self.device).reshape(-1)[:3]
        results = {k: [] for k in outputs}
        for cam in cams:
            origins, dirs, z_per_t = self._rays(cam)
            out = render_rays_chunked(self.field, self.grid, origins, dirs, bg)
            H, W = cam.height, cam.width
            alpha = out["opacity"]
            if "rgb" in outputs:
                results["rgb"].append(out["rgb"].clamp(0, 1).reshape(H, W, 3))
            if "depth" in outputs:  # expected distance -> expected camera z, in original units
                z = out["depth"] / alpha.clamp_min(1e-10) * z_per_t / self.normalization.scale
                results["depth"].append(torch.where(alpha > 1e-4, z, torch.zeros_like(z)).reshape(H, W, 1))
            if "alpha" in outputs:
                results["alpha"].append(alpha.reshape(H, W, 1))
        return {k: v[0] if single else torch.stack(v) for k, v in results.items()}

    def _rays(self, cam: Camera):
        """Rays of every pixel in the normalised frame, and camera z per unit of ray distance."""
        origins, dirs = self.normalization.camera_to_normalized(cam).rays(device=self.device)
        if cam.model == "ortho":  # parallel rays along the optical axis
            return origins, dirs, torch.ones(origins.shape[0], device=self.device)
        axis = torch.from_numpy(cam.viewmat[2, :3]).float().to(self.device)
        return origins, dirs, dirs @ axis
