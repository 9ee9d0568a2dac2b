"""Hash-grid radiance field trainer (Instant-NGP / nerfacc recipe), in the same run folders as
the Gaussian trainer (`base.py`: loop, evaluation, checkpoints, resume).

Each step draws rays at random pixels of random training images, as many as keep the marched
samples near `field_samples` (nerfacc's dynamic batch), renders them through the occupancy grid
and minimises L2 (or Huber) colour error. Images with alpha are trained over random background
colours (so empty space learns to be empty) and evaluated over white. Adam (betas 0.9/0.99, eps
1e-15, weight decay 1e-6 on the MLPs only), learning rate warmed up over 100 steps then divided by
3 at 1/2, 3/4 and 9/10 of the run (of the steps, or of the time budget when that comes first). The
occupancy grid is refreshed every 16 steps. Randomness comes from the checkpointed generator, so a
resumed CPU run repeats an uninterrupted one bit for bit.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from splat.camera import pixel_rays
from splat.datasets import Normalization
from splat.errors import InputError
from splat.field_scene import FieldScene
from splat.fields.radiance_field import FieldSpec, RadianceField, render_rays_train

from .base import BaseTrainer, TrainingError
from .config import TrainConfig
from .losses import psnr_from_mse

if TYPE_CHECKING:
    from splat.datasets import SceneDataset
    from splat.field_scene import FieldScene

MAX_RAYS = 1 << 16
MIN_RAYS = 64


def field_spec_for(config: TrainConfig, dataset: SceneDataset) -> FieldSpec:
    contract = config.field_contract == "yes" or (config.field_contract == "auto" and dataset.format != "blender")
    bound = config.field_bound or (1.0 if contract else 0.375)
    return FieldSpec(
        bound=bound,
        contract=contract,
        log2_hashmap_size=config.field_log2_hashmap_size,
        grid_resolution=config.field_grid_resolution,
    )


class FieldTrainer(BaseTrainer):
    def __init__(self, config: TrainConfig, dataset: SceneDataset, run_dir: str | Path, data_path: str | None = None):
        super().__init__(config, dataset, run_dir, data_path)
        if dataset.is_dynamic:
            raise InputError(f"model: field is for static scenes; {dataset.root} has frames over time (use --model 4d)")
        self.spec = field_spec_for(config, dataset)
        self.field = RadianceField(self.spec, generator=self.generator).to(self.device)
        self.grid = self.field.make_grid(self.device)
        self.optimizer = self._make_optimizer()
        self.num_rays = max(MIN_RAYS, min(MAX_RAYS, config.field_samples // 256))  # adapts after each step
        self.samples_per_ray = 0.0
        self._load_pixels()

    def _make_optimizer(self) -> torch.optim.Optimizer:
        mlp = {id(p) for p in self.field.mlp_parameters()}
        groups = [
            {"params": [p for p in self.field.parameters() if id(p) not in mlp], "weight_decay": 0.0},
            {"params": self.field.mlp_parameters(), "weight_decay": 1e-6},
        ]
        return torch.optim.Adam(groups, lr=self.cfg.field_lr, betas=(0.9, 0.99), eps=1e-15)

    def _load_pixels(self) -> None:
        """Every training image's pixels in one flat uint8 table (RGBA; alpha 255 where absent)
        with per-image offsets, sizes and cameras, for drawing random rays."""
        pix, masks, offsets, sizes, Ks, views = [], [], [0], [], [], []
        self.has_alpha = False
        for i in self.data.train_indices:
            p, mask = self.data.pixels(i)
            H, W = p.shape[:2]
            if p.shape[-1] == 4:
                self.has_alpha = True
            else:
                p = torch.cat([p, torch.full((H, W, 1), 255, dtype=torch.uint8)], dim=-1)
            pix.append(p.reshape(-1, 4))
            masks.append(torch.ones(H * W, dtype=torch.bool) if mask is None else mask.reshape(-1))
            offsets.append(offsets[-1] + H * W)
            sizes.append((W, H))
            Ks.append(self.data.K(i))
            views.append(self.data.viewmat(i))
        dev = self.device
        self.pixel_table = torch.cat(pix).to(dev)
        self.pixel_valid = torch.cat(masks).to(dev)
        self.image_offsets = torch.tensor(offsets[:-1], dtype=torch.int64, device=dev)
        self.image_sizes = torch.tensor(sizes, dtype=torch.int64, device=dev)
        self.image_Ks = torch.stack(Ks).to(dev)
        self.image_views = torch.stack(views).to(dev)
        if self.cfg.background == "auto" and self.has_alpha:
            self.background_mode = "random"  # eval stays on white (base.py)

    # ------------------------------------------------------------------------------------------
    # schedule

    def lr_factor(self, step: int) -> float:
        warmup = min(1.0, 0.01 + 0.99 * step / 100)
        p = self.progress(step)
        return warmup * 0.33 ** sum(p >= m for m in (0.5, 0.75, 0.9))

    # ------------------------------------------------------------------------------------------
    # training

    def sample_rays(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        g = self.generator
        img = torch.randint(len(self.data.train_indices), (n,), generator=g).to(self.device)
        size = self.image_sizes[img]
        xy = (torch.rand((n, 2), generator=g).to(self.device) * size).long().minimum(size - 1)
        flat = self.image_offsets[img] + xy[:, 1] * size[:, 0] + xy[:, 0]
        origins, dirs = pixel_rays(xy, self.image_Ks[img], self.image_views[img])
        if self.background_mode == "random":
            bg = torch.rand((n, 3), generator=g).to(self.device)
        else:
            bg = self.eval_background.to(self.device).expand(n, 3)
        rgba = self.pixel_table[flat].float() / 255.0
        gt = rgba[:, :3] * rgba[:, 3:] + bg * (1 - rgba[:, 3:])
        return origins, dirs, bg, gt, self.pixel_valid[flat]

    def train_step(self) -> dict:
        c = self.cfg
        step = self.step
        self.grid.update(step, self.field.density, self.generator)
        for group in self.optimizer.param_groups:
            group["lr"] = c.field_lr * self.lr_factor(step)
        origins, dirs, bg, gt, valid = self.sample_rays(self.num_rays)
        out = render_rays_train(self.field, self.grid, origins, dirs, bg)
        err = out["rgb"] - gt
        weight = valid.float()[:, None] / max(float(valid.sum()), 1.0) / 3
        if c.field_loss == "huber":
            loss = (torch.nn.functional.huber_loss(out["rgb"], gt, reduction="none", delta=0.1) * weight).sum()
        else:
            loss = (err.square() * weight).sum()
        if not torch.isfinite(loss):
            raise TrainingError(
                f"loss became {loss.item()} at step {step}; lower --field-lr or check the data "
                "(last checkpoint is kept)"
            )
        self.optimizer.zero_grad(set_to_none=True)
        if out["samples"] > 0:
            loss.backward()
            self.optimizer.step()
        self.step = step + 1
        samples = out["samples"]
        self.samples_per_ray = samples / self.num_rays
        if samples > 0:  # nerfacc's dynamic batch: as many rays as keep the samples near the target
            self.num_rays = int(min(MAX_RAYS, max(MIN_RAYS, self.num_rays * c.field_samples / samples)))
        mse = float((err.detach().square() * weight).sum())
        return {
            "loss": loss.item(),
            "psnr": psnr_from_mse(mse, 1e-10),
            "rays": int(origins.shape[0]),
            "samples": samples,
            "marched": out["marched"],
        }

    # ------------------------------------------------------------------------------------------
    # what the run loop needs (base.py)

    def render_eval(self, index: int, background: torch.Tensor) -> torch.Tensor:
        return self.scene().render(self.cameras[index], background=background)["rgb"]

    def scene(self) -> FieldScene:
        """The live field and occupancy grid (not copied), in the training frame."""
        return FieldScene(self.field, self.grid, Normalization.identity(), cameras=self.cameras, source="training")

    def model_stats(self) -> dict:
        return {
            "occupied_fraction": round(self.grid.occupied_fraction, 5),
            "samples_per_ray": round(self.samples_per_ray, 2),
        }

    def model_text(self) -> str:
        return f"{100 * self.grid.occupied_fraction:.1f}% occupied, {self.samples_per_ray:.1f} samples/ray"

    def state_dict(self) -> dict:
        return {
            "model": "field",
            "field_spec": dataclasses.asdict(self.spec),
            "step": self.step,
            "train_seconds": self.train_seconds,
            "field": {k: v.detach().cpu() for k, v in self.field.state_dict().items()},
            "grid": self.grid.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "num_rays": self.num_rays,
            "config": self.cfg.to_json(),
            "normalization": self.data.normalization.to_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("model") != "field":
            raise InputError("checkpoint: not a neural-field run (its model is Gaussians)")
        self.step = int(state["step"])
        self.train_seconds = float(state["train_seconds"])
        self.field.load_state_dict(state["field"])
        self.grid.load_state_dict(state["grid"])
        self.optimizer = self._make_optimizer()
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.num_rays = int(state["num_rays"])
