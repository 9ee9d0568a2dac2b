"""Trained scenes for rendering: `splat.load(path)` and `GaussianScene.render(...)`.

    scene = splat.load("runs/lego")                 # a run folder, a checkpoint (.pt) or a PLY
    cam = splat.Camera.look_at((0, -4, 2), (0, 0, 0), width=800, height=600, fov_x=50)
    out = scene.render(cam, outputs=("rgb", "depth", "alpha"))   # out["rgb"]: (600, 800, 3)

Scenes live in their dataset's original frame (the frame a PLY export uses), whatever the
normalisation used in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from . import motion
from .camera import Camera
from .checkpoint_checks import DEFAULT_EPS2D, MAX_EPS2D, is_filter_variance, recorded_render_settings
from .errors import InputError
from .field_scene import FieldScene
from .gaussians import gaussians_to_original, is_dynamic, rasterize_gaussians, sh_degree_of
from .scene_protocol import Scene, camera_batch


class SceneLoadError(InputError):
    """A path that is not a readable scene (message names it)."""


class GaussianScene:
    """3D Gaussians as pre-activation tensors (the PLY layout, splat/gaussians.py): means,
    log-scales, wxyz quats, opacity logits, SH DC (N,1,3) and higher bands (N,K-1,3). Dynamic
    scenes hold 4D Gaussians: means and log-scales (N,4) with time last, and `quats_right`
    (renderer/slicing.py); or 3D Gaussians with blend logits (`splats["motion"]`) and the shared
    motions `bases` that move them (splat/motion.py). The tensors are kept, not copied (a training
    run's scene shows its live parameters); `sh_degree` limits the bands rendered (a run's current
    degree); `rasterize_mode` is the rasterizer's ("classic", or "antialiased" for Gaussians trained
    with Mip-Splatting's opacity compensation) and `eps2d` its low-pass filter (px^2): a run's
    checkpoint records both."""

    progressive = False

    def __init__(
        self,
        splats: dict[str, torch.Tensor],
        cameras: list[Camera] | None = None,
        source: str = "",
        sh_degree: int | None = None,
        bases: dict[str, torch.Tensor] | None = None,
        rasterize_mode: str = "classic",
        eps2d: float = DEFAULT_EPS2D,
    ):
        from splat.renderer.validation import RASTERIZE_MODES

        if rasterize_mode not in RASTERIZE_MODES:
            raise InputError(f"rasterize_mode: expected one of {RASTERIZE_MODES}, got {rasterize_mode!r}")
        if not is_filter_variance(eps2d):
            raise InputError(f"eps2d: expected a variance in (0, {MAX_EPS2D:g}] px^2, got {eps2d}")
        self.rasterize_mode, self.eps2d = rasterize_mode, float(eps2d)
        self.splats = {k: v.detach() for k, v in splats.items()}
        self.bases = {k: v.detach() for k, v in bases.items()} if bases is not None else None
        if (self.bases is None) != (motion.MOTION_KEY not in self.splats):
            raise InputError("splats: blend logits ('motion') and shared motions (bases) come together")
        if self.splats.get("shN") is None:
            self.splats["shN"] = self.splats["sh0"].new_zeros(self.num_gaussians, 0, 3)
        self.cameras = cameras or []
        self.source = source
        self._sh_degree = sh_degree

    @property
    def num_gaussians(self) -> int:
        return int(self.splats["means"].shape[0])

    @property
    def summary(self) -> str:
        kind = "moving " if self.bases is not None else "4D " if self.is_dynamic else ""
        return f"{self.num_gaussians:,} {kind}Gaussians"

    @property
    def num_primitives(self) -> int:
        return self.num_gaussians

    @property
    def sh_degree(self) -> int:
        held = sh_degree_of(self.splats)
        return held if self._sh_degree is None else min(self._sh_degree, held)

    @property
    def device(self) -> torch.device:
        return self.splats["means"].device

    @property
    def is_dynamic(self) -> bool:
        """4D Gaussians, or 3D ones moved by shared motions: the scene changes with time."""
        return self.bases is not None or is_dynamic(self.splats)

    @property
    def time_range(self) -> tuple[float, float] | None:
        return (0.0, 1.0) if self.is_dynamic else None

    def to(self, device: str | torch.device) -> GaussianScene:
        return GaussianScene(
            {k: v.to(device) for k, v in self.splats.items()},
            self.cameras,
            self.source,
            self._sh_degree,
            {k: v.to(device) for k, v in self.bases.items()} if self.bases is not None else None,
            self.rasterize_mode,
            self.eps2d,
        )

    def at_time(self, time: float) -> GaussianScene:
        """A dynamic scene's 3D Gaussians at `time` in [0, 1] (renders as `render(..., time=time)`;
        the ones invisible then are left out). What `splat export --time` writes."""
        from splat.renderer.rasterization_4d import slice_gaussians

        if not self.is_dynamic:
            raise InputError("time: this scene is static (3D Gaussians); it has no time to slice")
        if self.bases is not None:
            splats = motion.deform(self.splats, self.bases, time)
        else:
            splats = slice_gaussians(self.splats, time)
        return GaussianScene(
            splats,
            self.cameras,
            f"{self.source}@t={time:g}",
            self._sh_degree,
            rasterize_mode=self.rasterize_mode,
            eps2d=self.eps2d,
        )

    def bounds(self, quantile: float = 0.98) -> tuple[np.ndarray, np.ndarray]:
        """Robust axis-aligned bounds of the Gaussian centres (ignoring the outer 2%)."""
        m = self.splats["means"][:, :3].float()
        q = torch.tensor([1 - quantile, quantile], device=m.device)
        lo_hi = torch.quantile(m[torch.randperm(m.shape[0], device=m.device)[:200_000]], q, dim=0)
        return lo_hi[0].cpu().numpy().astype(np.float64), lo_hi[1].cpu().numpy().astype(np.float64)

    def render(
        self,
        cameras: Camera | Sequence[Camera],
        outputs: Sequence[str] = ("rgb",),
        background=(0.0, 0.0, 0.0),
        time: float | None = None,
        tile_size: int = 16,
    ) -> dict[str, torch.Tensor]:
        """Render one camera ((H, W, C) outputs) or a list of equally sized cameras ((B, H, W, C)).

        outputs: any of "rgb" (3 channels, composited over `background`), "depth" (expected
        camera z, 1 channel, 0 where nothing is hit), "alpha" (1 channel).
        time: for dynamic scenes, the time in [0, 1] (default 0); a list of cameras may come with
        a list of times (one per camera).
        """
        if time is not None and not self.is_dynamic:
            raise InputError("time: this scene is static (3D Gaussians); leave time=None")
        single, cams = camera_batch(cameras, outputs)
        first = cams[0]
        if any((c.width, c.height, c.model) != (first.width, first.height, first.model) for c in cams):
            raise InputError("cameras: a batch must share width, height and camera model (render them one by one)")
        if self.bases is not None:  # moved Gaussians: 3D at each camera's time
            times = np.broadcast_to(np.asarray(0.0 if time is None else time, dtype=np.float64), (len(cams),))
            if len(set(times.tolist())) > 1:
                parts = [
                    self.at_time(float(t)).render(c, outputs, background, None, tile_size) for c, t in zip(cams, times)
                ]
                return {k: torch.stack([p[k] for p in parts]) for k in parts[0]}
            return self.at_time(float(times[0])).render(cameras, outputs, background, None, tile_size)
        dev = self.device
        viewmats = torch.from_numpy(np.stack([c.viewmat for c in cams])).float().to(dev)
        Ks = torch.from_numpy(np.stack([c.K for c in cams])).float().to(dev)
        bg = torch.as_tensor(background, dtype=torch.float32, device=dev).reshape(-1)[:3]
        with torch.no_grad():
            colors, alphas, _ = rasterize_gaussians(
                self.splats,
                viewmats,
                Ks,
                first.width,
                first.height,
                sh_degree=self.sh_degree,
                backgrounds=bg.expand(len(cams), 3).contiguous(),
                times=torch.as_tensor(0.0 if time is None else time, dtype=torch.float32) if self.is_dynamic else None,
                render_mode=("RGB+ED" if "depth" in outputs else "RGB") if "rgb" in outputs else "ED",
                camera_model=first.model,
                tile_size=tile_size,
                rasterize_mode=self.rasterize_mode,
                eps2d=self.eps2d,
            )
        result = {}
        if "rgb" in outputs:
            result["rgb"] = colors[..., :3].clamp(0, 1)
        if "depth" in outputs:
            result["depth"] = torch.where(alphas > 1e-4, colors[..., -1:], torch.zeros_like(alphas))
        if "alpha" in outputs:
            result["alpha"] = alphas
        return {k: v[0] for k, v in result.items()} if single else result


def _training_cameras(run_info: dict) -> list[Camera]:
    """The run's dataset cameras in the original frame (empty when the data is not at hand)."""
    from splat.datasets import DatasetError
    from splat.run_folder import run_dataset

    try:
        data = run_dataset(run_info)
    except (DatasetError, OSError, KeyError):
        return []
    return [data.normalization.camera_to_original(f.camera) for f in data.frames]


def load(path: str | Path, device: str | torch.device = "cpu", with_cameras: bool = True) -> Scene:
    """Load a trained scene: a splat file (INRIA / gsplat / nerfstudio PLY, SuperSplat compressed
    PLY, Niantic SPZ, antimatter15 .splat: `splat.formats`), a splat checkpoint (.pt, or a
    distributed run's step folder) or a run folder (its newest checkpoint, with the training
    cameras when its dataset is reachable). Gaussian runs and PLYs give a `GaussianScene`,
    neural-field runs a `FieldScene`; both render the same way."""
    from splat.io_utils import read_json_object
    from splat.run_folder import checkpoint_paths, read_checkpoint, read_newest_checkpoint

    path = Path(path)
    if not path.exists():
        raise SceneLoadError(f"{path}: no such file or folder")
    if path.is_dir() and (path / "complete.json").is_file():  # a distributed run's checkpoint: one scene
        return _scene_from_checkpoint(path, read_checkpoint(path), device)
    if path.is_dir():
        config = path / "config.json"
        if not config.is_file() or not checkpoint_paths(path):
            raise SceneLoadError(f"{path}: not a run folder with a checkpoint (config.json, checkpoints/step_*.pt)")
        info = read_json_object(config, SceneLoadError)
        scene = _scene_from_checkpoint(*read_newest_checkpoint(path, "load"), device)
        scene.cameras = _training_cameras(info) if with_cameras else []
        scene.source = str(path)
        return scene
    if path.suffix.lower() == ".pt":
        return _scene_from_checkpoint(path, read_checkpoint(path), device)  # weights only: cannot run code
    from splat.formats import read_splats  # PLY, compressed PLY, SPZ, .splat: by magic / extension

    return GaussianScene(read_splats(path), source=str(path)).to(device)


def _scene_from_checkpoint(path: Path, state: dict, device: str | torch.device) -> Scene:
    from splat.datasets import Normalization

    # `state` was checked when it was read (splat.checkpoint_checks): a failure from here on is a bug
    if state.get("model") == "field":
        return FieldScene.from_checkpoint(state, device, source=str(path))
    params, norm = state["params"], Normalization.from_dict(state["normalization"])
    bases = state.get("bases")
    if bases is not None:
        bases = motion.bases_to_original(bases, norm.scale, torch.from_numpy(norm.center))
    return GaussianScene(
        gaussians_to_original(params, norm),
        source=str(path),
        bases=bases,
        **recorded_render_settings(state.get("config", {})),
    ).to(device)
