"""Distributed 3D Gaussian training: each rank owns and optimises a shard of the Gaussians
(`renderer/distributed.py` moves the projected Gaussians between ranks); `new_trainer` builds
this trainer whenever a process group is running (`splat train --nproc N`, or torchrun).

A step: the R ranks draw one global batch of B = R x C images from the shared image order (the
stream a single process with batch B would draw), rank r renders images r*C .. r*C + C - 1 with
every Gaussian of the world, its loss is its share of the batch mean, and the backward pass sends
each gradient to the Gaussian's owner. No gradient is all-reduced: per step the ranks exchange
only the projected Gaussians, a few scalars (loss, PSNR, stop flag, clock) and Gaussian counts.

Learning rates follow the batch-size rule of "On Scaling Up 3D Gaussian Splatting Training"
(Zhao et al. 2024), which gsplat also uses: lr x sqrt(B) and Adam momenta beta^B. Under their
independent-gradients hypothesis a batch of B images sums B roughly independent noisy gradients,
so its noise grows as sqrt(B) and the step can grow as sqrt(B); beta^B keeps the momenta's
memory the same number of images long (gsplat writes the first-order 1 - B (1 - beta)). The
schedule counts optimiser steps: `steps` 30000 with B = 4 sees 120k images, so divide the
single-process steps (and refine / reset intervals) by B for the same image budget.

Densification runs on each shard with exact statistics and no extra communication: the owner
projected its Gaussians into every camera of the step, so it holds their radii, and the
all-to-all backward delivers their screen-space gradients from every rank.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import torch

from splat import distributed as D
from splat.errors import InputError
from splat.gaussians import activated
from splat.renderer.distributed import all_gather_cat, rasterize_distributed

from . import dist_checkpoint, losses
from .base import TrainingError
from .trainer import Trainer, sh_degree_at

if TYPE_CHECKING:
    from pathlib import Path

    from splat.datasets import SceneDataset

    from .config import TrainConfig


class DistributedTrainer(Trainer):
    def __init__(self, config: TrainConfig, dataset: SceneDataset, run_dir: str | Path, data_path: str | None = None):
        self.rank, self.world_size = D.world()
        self.global_batch = config.batch_size * self.world_size
        self._stop_local = self._stop_synced = False
        self._synced_seconds = 0.0
        self._eval_log: list | None = None
        if config.model in ("field", "motion") or (config.model in ("auto", "4d") and dataset.is_dynamic):
            raise InputError(
                f"{dataset.root}: distributed training supports 3D Gaussians only (model 3d), "
                "not dynamic scenes or fields"
            )
        if getattr(config, "appearance", False):
            raise InputError(
                "appearance: not available in distributed training (each image's compensation would "
                "live on the rank that rendered it)"
            )
        if config.strategy == "default" and config.absgrad:
            raise InputError("absgrad: not available in distributed training (the per-pixel sums live on other ranks)")
        sizes = {(dataset.camera(i).width, dataset.camera(i).height) for i in range(len(dataset.frames))}
        if len(sizes) > 1:
            raise InputError(
                f"{dataset.root}: distributed training needs images of one size, found {sorted(sizes)[:4]}"
            )
        super().__init__(config, dataset, run_dir, data_path)
        # every rank initialised the same Gaussians from the same seed: keep this rank's share
        full = self.params
        self.params = torch.nn.ParameterDict(
            {
                k: torch.nn.Parameter(torch.tensor_split(v.data, self.world_size)[self.rank].clone())
                for k, v in full.items()
            }
        )
        del full
        self.optimizers = self._make_optimizers()
        self.strategy.max_gaussians = max(1, config.max_gaussians // self.world_size)
        if hasattr(self.strategy, "cap_max"):
            self.strategy.cap_max = max(1, config.mcmc_cap_max // self.world_size)
        self.strategy_state = self.strategy.initialize_state(scene_scale=self.scene_extent, n=self.num_gaussians)
        # densification randomness is per shard; the image order and backgrounds are shared
        self.shard_generator = torch.Generator().manual_seed(config.seed * 1_000_003 + self.rank + 1)
        self.n_world = self._world_count()

    # ------------------------------------------------------------------------------------------
    # set-up and schedule

    def _make_optimizers(self):
        optimizers = super()._make_optimizers()
        self._scale_hyperparameters(optimizers)
        return optimizers

    def _scale_hyperparameters(self, optimizers) -> None:
        base = super()._make_optimizers()  # the single-process learning rates
        for name, opt in optimizers.items():
            for group, ref in zip(opt.param_groups, base[name].param_groups):
                group["lr"] = ref["lr"] * math.sqrt(self.global_batch)
                group["betas"] = tuple(b**self.global_batch for b in dist_checkpoint.ADAM_BETAS)

    def lr_means(self, step: int) -> float:
        return super().lr_means(step) * math.sqrt(self.global_batch)

    def progress(self, step: int) -> float:
        # the clock every rank agreed on (each rank's own clock would stop them at different steps)
        t = step / max(self.cfg.steps, 1)
        if self.cfg.max_train_seconds > 0:
            t = max(t, self._synced_seconds / self.cfg.max_train_seconds)
        return min(t, 1.0)

    @property
    def out_of_time(self) -> bool:
        return self.cfg.max_train_seconds > 0 and self._synced_seconds >= self.cfg.max_train_seconds

    @property
    def _stop_requested(self) -> bool:  # Ctrl-C on any rank stops all of them after the same step
        return self._stop_synced

    @_stop_requested.setter
    def _stop_requested(self, value: bool) -> None:
        self._stop_local = bool(value)
        if not value:
            self._stop_synced = False

    @property
    def is_main_rank(self) -> bool:
        return self.rank == 0

    def _world_count(self) -> int:
        return int(all_gather_cat(torch.tensor([self.num_gaussians], device=self.device)).sum())

    # ------------------------------------------------------------------------------------------
    # rendering

    def _views(self, indices: list[int], downscale: int):
        viewmats, Ks = [], []
        for index in indices:
            cam = self.data.camera(index)
            if downscale > 1:
                cam = cam.resized(max(1, cam.width // downscale), max(1, cam.height // downscale))
            width, height = cam.width, cam.height
            viewmats.append(self.data.viewmat(index))
            Ks.append(torch.from_numpy(cam.K).float())
        return torch.stack(viewmats).to(self.device), torch.stack(Ks).to(self.device), width, height

    def _render(self, indices: list[int], backgrounds: torch.Tensor, sh_degree: int, downscale: int = 1):
        viewmats, Ks, width, height = self._views(indices, downscale)
        p = activated(self.params)
        return rasterize_distributed(
            p["means"],
            p["quats"],
            p["scales"],
            p["opacities"],
            p["colors"],
            viewmats,
            Ks,
            width,
            height,
            sh_degree=sh_degree,
            backgrounds=backgrounds.to(self.device),
            rasterize_mode=self.cfg.rasterize_mode,
            eps2d=self.cfg.eps2d,
        )

    def render(
        self, index: int, background: torch.Tensor, sh_degree: int, downscale: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Collective: every rank renders one image (its own `index`) with all Gaussians."""
        colors, alphas, meta = self._render([index], background[None], sh_degree, downscale)
        return colors[0], alphas[0], meta

    # ------------------------------------------------------------------------------------------
    # training

    def train_step(self) -> dict:
        c = self.cfg
        step, t0 = self.step, time.perf_counter()
        downscale = self.downscale_at(step)
        sh_degree = sh_degree_at(step, c)
        lr = self.lr_means(step)
        for g in self.optimizers["means"].param_groups:
            g["lr"] = lr

        mine, backgrounds = [], []
        for j in range(self.global_batch):  # the draws of a single-process batch of B images
            index = self.next_image()
            bg = torch.rand(3, generator=self.generator) if self.background_mode == "random" else self.eval_background
            if j // c.batch_size == self.rank:
                mine.append(index)
                backgrounds.append(bg)
        images, _, meta = self._render(mine, torch.stack(backgrounds), sh_degree, downscale)
        info = {
            "means2d": meta["shard_means2d"],
            "radii": meta["shard_radii"],
            "width": meta["width"],
            "height": meta["height"],
            "n_cameras": self.global_batch,
            "num_gaussians": self.num_gaussians,
        }
        self.strategy.step_pre_backward(self.params, self.optimizers, self.strategy_state, step, info)
        truths = [self.ground_truth(index, bg, downscale) for index, bg in zip(mine, backgrounds)]
        loss = sum(losses.photometric_loss(images[k], gt, mask, c.ssim_lambda) for k, (gt, mask) in enumerate(truths))
        # this rank's share of the batch mean, and of the regulariser's mean over all Gaussians
        loss = loss / self.global_batch
        loss = loss + self.strategy.regularization(self.params) * (self.num_gaussians / meta["n_gaussians_world"])
        loss.backward()
        psnr_sum = sum(losses.psnr(images[k].detach(), gt, mask) for k, (gt, mask) in enumerate(truths))

        for opt in self.optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        stats = self.strategy.step_post_backward(
            self.params,
            self.optimizers,
            self.strategy_state,
            step + 1,
            info,
            self.shard_generator,
            lr_means=lr,
            progress=self.progress(step + 1),
        )
        stats["tile_pairs"] = int(meta["isect_ids"].numel())  # (Gaussian, tile) pairs composited, summed over ranks
        # the step's one gather of scalars: loss, PSNR, stop flag, clock, Gaussian count, densification counts
        counts = sorted(k for k, v in stats.items() if not isinstance(v, bool))
        elapsed = self.train_seconds + time.perf_counter() - t0
        scalars = [loss.item(), psnr_sum, float(self._stop_local), elapsed, self.num_gaussians] + [
            stats[k] for k in counts
        ]
        world = all_gather_cat(torch.tensor([scalars], dtype=torch.float64, device=self.device)).cpu()
        total_loss = float(world[:, 0].sum())
        if not math.isfinite(total_loss):
            raise TrainingError(
                f"loss became {total_loss} at step {step}; lower the learning rates or check the data "
                "(last checkpoint is kept)"
            )
        self._stop_synced = bool(world[:, 2].any())
        self._synced_seconds = float(world[:, 3].max())
        self.n_world = int(world[:, 4].sum())
        stats.update({k: int(v) for k, v in zip(counts, world[:, 5:].sum(dim=0).tolist())})
        self.step = step + 1
        return {"loss": total_loss, "psnr": float(world[:, 1].sum()) / self.global_batch, **stats}

    # ------------------------------------------------------------------------------------------
    # evaluation: the test images are dealt round-robin, every rank renders its share

    def eval_indices(self, full: bool, split: str = "test") -> list[int]:
        every = super().eval_indices(full, split)
        return every[self.rank :: self.world_size] or every[:1]

    def scored_splits(self) -> list[str]:
        return ["test"]  # the collective renders are counted over the test split alone

    def render_eval(self, index: int, background: torch.Tensor) -> torch.Tensor:
        """Collective, like the training renders: the Gaussians are sharded over the ranks."""
        self._eval_renders += 1
        return self.render(index, background, sh_degree_at(self.step, self.cfg))[0]

    def log(self, record: dict) -> None:
        if self._eval_log is not None:
            self._eval_log.append(record)
        elif self.rank == 0:
            super().log(record)

    @torch.no_grad()
    def evaluate(self, full: bool = True, save_renders: bool | None = None) -> dict:
        every = Trainer.eval_indices(self, full)
        rounds = -(-len(every) // self.world_size)
        self._eval_log, self._eval_renders = [], 0
        try:
            super().evaluate(full, save_renders)
            while self._eval_renders < rounds:  # the collective renders must pair up across ranks
                self.render_eval(every[0], self.eval_background)
            local = self._eval_log[-1]
        finally:
            self._eval_log = None
        weight = len(every[self.rank :: self.world_size])
        parts = D.gather_objects((weight, local))
        result = merge_eval_records(parts)
        self.log(result)
        return result

    # ------------------------------------------------------------------------------------------
    # run folder and checkpoints

    def _write_config(self) -> None:
        if self.rank == 0:
            super()._write_config()

    def _truncate_metrics(self, step: int) -> None:
        # rank 0 writes the run's files: another rank's rewrite of metrics.jsonl raced rank 0's
        # lock, which removes temporary files it finds (seen: ENOENT on resume)
        if self.rank == 0:
            super()._truncate_metrics(step)

    def scene(self):
        raise InputError("--viewer: the live viewer is not available in distributed training (view the run afterwards)")

    def model_stats(self) -> dict:
        return {"num_gaussians": self.n_world}

    def model_text(self) -> str:
        return f"{self.n_world:,} G on {self.world_size} ranks"

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "rank": self.rank,
            "world_size": self.world_size,
            "global_batch": self.global_batch,
            "shard_generator": self.shard_generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._scale_hyperparameters(self.optimizers)  # a re-sharded run was saved with another batch
        if "shard_generator" in state:
            self.shard_generator.set_state(state["shard_generator"])
        self._synced_seconds = self.train_seconds
        self.n_world = self._world_count()

    def save_checkpoint(self) -> Path:
        dist_checkpoint.write_shard(self.run_dir, self.step, self.rank, self.state_dict())
        counts = D.gather_objects(self.num_gaussians)  # also: every shard is on disk
        folder = dist_checkpoint.step_dir(self.run_dir, self.step)
        if self.rank == 0:
            dist_checkpoint.complete(
                self.run_dir, self.step, self.world_size, {"num_gaussians": counts}, self.cfg.keep_checkpoints
            )
        D.barrier()
        return folder


def merge_eval_records(parts: list[tuple[int, dict]]) -> dict:
    """Evaluation records of the ranks (weight = images rendered) -> one: means weighted by the
    images, counts summed, seconds the slowest rank's."""
    total = sum(w for w, _ in parts) or 1
    merged = {k: v for k, v in parts[0][1].items() if k != "eval"}
    ev = dict(parts[0][1]["eval"])
    for key, value in parts[0][1]["eval"].items():
        if key == "num_images":
            ev[key] = sum(w for w, _ in parts)
        elif key == "seconds":
            ev[key] = max(p["eval"][key] for _, p in parts)
        elif isinstance(value, float):
            ev[key] = sum(w * p["eval"][key] for w, p in parts) / total
    merged["eval"] = ev
    return merged
