"""Gaussian splatting trainer for 3D and 4D (XYZT, dynamic) scenes: `batch_size` images a step,
Adam, a densification strategy, periodic evaluation, atomic checkpoints and exact resume (the run
folder and loop: `base.py`).

All randomness (image order, backgrounds, splits, MCMC sampling) comes from one generator whose
state is checkpointed, and CPU gradients are summed in a fixed order, so a resumed run repeats an
uninterrupted one bit for bit on the CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from splat import motion as shared_motion
from splat.errors import InputError
from splat.gaussians import rasterize_gaussians
from splat.scene import GaussianScene

from . import dynamic, losses
from .appearance import AppearanceCompensation
from .base import BaseTrainer, TrainingError  # noqa: F401 - re-exported
from .config import TrainConfig
from .model import background_fill, init_params, random_points
from .strategies import make_strategy

if TYPE_CHECKING:
    from splat.datasets import SceneDataset
    from splat.scene import GaussianScene


WARMUP_MIN_SIDE = 80  # pixels: the resolution warm-up never trains on smaller images


class Trainer(BaseTrainer):
    def __init__(self, config: TrainConfig, dataset: SceneDataset, run_dir: str | Path, data_path: str | None = None):
        super().__init__(config, dataset, run_dir, data_path)
        self._order: list[int] = []
        if config.background == "auto":  # config.json records what the images chose (`splat render` uses it)
            config.background = self.background_mode

        # "auto" was resolved by the data (BaseTrainer): the scene changes with time when its model is
        self.xyzt = config.model == "4d"  # 4D Gaussians, or
        self.moving = config.model == "motion"  # 3D Gaussians moved by shared motions (splat/motion.py)
        self.dynamic = self.xyzt or self.moving
        if self.dynamic and not dataset.is_dynamic:
            raise InputError(
                f"model: {config.model} needs frames with a time (D-NeRF / nerfstudio 'time', or a video posed by "
                f"splat); {dataset.root} has none"
            )
        init_scale = config.init_scale  # (the strategy's defaults filled in: config.STRATEGY_DEFAULTS)
        if dataset.points is not None:
            points, colors = dataset.points, dataset.point_colors
            n_fill = int(config.background_points * points.shape[0])
            if n_fill > 0:
                fill, fill_colors = background_fill(n_fill, dataset, points, self.generator)
                self.init_note = f"{points.shape[0]:,} sparse points + {fill.shape[0]:,} background fill"
                points, colors = torch.cat([points, fill]), torch.cat([colors, fill_colors])
        else:
            points, colors = random_points(config.init_points, dataset, self.generator)
            init_scale = config.random_init_scale
        if points.shape[0] > config.max_gaussians:
            keep = torch.randperm(points.shape[0], generator=self.generator)[: config.max_gaussians]
            points, colors = points[keep], colors[keep]
        init_opacity = config.init_opacity
        times = torch.rand(points.shape[0], generator=self.generator) if self.xyzt else None
        self.params = init_params(
            points, colors, config.sh_degree, init_opacity, init_scale, times, config.init_time_scale
        ).to(self.device)
        self.bases: torch.nn.ParameterDict | None = None
        if self.moving:
            logits, pivots = shared_motion.initial_blend(points.float(), config.motion_bases, self.generator)
            self.params[shared_motion.MOTION_KEY] = torch.nn.Parameter(logits.to(self.device))
            bases = {**shared_motion.identity_bases(config.motion_bases, max(2, config.motion_knots)), "pivots": pivots}
            self.bases = torch.nn.ParameterDict({k: torch.nn.Parameter(v.to(self.device)) for k, v in bases.items()})
            self.bases["pivots"].requires_grad_(False)  # where each motion turns about: chosen, not learned
        self.optimizers = self._make_optimizers()
        self.strategy = make_strategy(config)
        self.strategy_state = self.strategy.initialize_state(scene_scale=self.scene_extent, n=self.num_gaussians)
        self.appearance = AppearanceCompensation(len(dataset), self.device) if config.appearance else None

    # ------------------------------------------------------------------------------------------
    # set-up

    def _make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.cfg
        lrs = {
            "means": c.lr_means * self.scene_extent,
            "scales": c.lr_scales,
            "quats": c.lr_quats,
            "opacities": c.lr_opacities,
            "sh0": c.lr_sh0,
            "shN": c.lr_shN,
        }
        if "quats_right" in self.params:
            lrs["quats_right"] = c.lr_quats
        if shared_motion.MOTION_KEY in self.params:
            lrs[shared_motion.MOTION_KEY] = c.lr_motion_weights
        # fused: one kernel per parameter instead of a dozen element-wise passes (4.9x less CPU time
        # at 130k Gaussians, bench/results/step_cost-cpu.json); deterministic, so resume stays exact
        optimizers = {
            name: torch.optim.Adam([self.params[name]], lr=lr, eps=1e-15, fused=True) for name, lr in lrs.items()
        }
        if self.bases is not None:  # not rows of the Gaussians: the strategies' edits leave them alone
            optimizers["bases"] = torch.optim.Adam(
                [
                    {"params": [self.bases["rotations"]], "lr": c.lr_motion},
                    {"params": [self.bases["translations"]], "lr": c.lr_motion * self.scene_extent},
                ],
                eps=1e-15,
            )
        return optimizers

    @property
    def scene_extent(self) -> float:
        """The scene scale of INRIA 3DGS / gsplat: 1.1 x the camera radius (1.1 after normalisation)."""
        return 1.1 * self.data.extent

    @property
    def num_gaussians(self) -> int:
        return int(self.params["means"].shape[0])

    def lr_means(self, step: int) -> float:
        """Exponential decay over the run; with a time budget, over whichever limit comes first
        (so the schedule completes within the budget; such runs then depend on timing)."""
        c = self.cfg
        return c.lr_means * self.scene_extent * (c.lr_means_final / c.lr_means) ** self.progress(step)

    def lr_motion_at(self, step: int) -> float:
        """The motions' rate: lr_motion for the first half of the run, then exponentially down to
        lr_motion_final (Adam's fixed-size steps keep the motions moving by about the rate: fitted
        again with small steps, they match the training frames better)."""
        c = self.cfg
        late = max(0.0, 2.0 * self.progress(step) - 1.0)
        ratio = c.lr_motion_final / c.lr_motion if c.lr_motion > 0 else 0.0  # lr_motion 0: motions frozen
        return c.lr_motion * ratio**late

    def downscale_at(self, step: int) -> int:
        """The resolution warm-up's factor at `step`, limited so that the longer image side stays at
        least WARMUP_MIN_SIDE pixels (the CPU preset's 1/4 would train a 100-px D-NeRF frame at 25 px
        for its first 500 steps and at 50 px until step 2000: 21.5 dB on the training frames after
        2000 steps, bench/results/train_dnerf-cpu.json)."""
        factor = 1
        for start, f in sorted(self.cfg.resolution_schedule):
            if step >= int(start):
                factor = int(f)
        cam = self.data.camera(self.data.train_indices[0])
        return max(1, min(factor, max(cam.width, cam.height) // WARMUP_MIN_SIDE))

    # ------------------------------------------------------------------------------------------
    # rendering

    def render(
        self, index: int, background: torch.Tensor, sh_degree: int, downscale: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        cam = self.data.camera(index)
        if downscale > 1:
            cam = cam.resized(max(1, cam.width // downscale), max(1, cam.height // downscale))
        K, width, height = torch.from_numpy(cam.K).float(), cam.width, cam.height
        params = shared_motion.deform(self.params, self.bases, float(cam.time)) if self.moving else self.params
        colors, alphas, info = rasterize_gaussians(
            params,
            self.data.viewmat(index)[None].to(self.device),
            K[None].to(self.device),
            width,
            height,
            sh_degree=sh_degree,
            backgrounds=background[None].to(self.device),
            times=float(cam.time) if self.xyzt else None,
            absgrad=self.cfg.strategy == "default" and self.cfg.absgrad,
            rasterize_mode=self.cfg.rasterize_mode,
            eps2d=self.cfg.eps2d,
        )
        if self.xyzt:
            info["num_gaussians"] = self.num_gaussians
        return colors[0], alphas[0], info

    # ------------------------------------------------------------------------------------------
    # training

    def next_image(self) -> int:
        if not self._order:
            train = self.data.train_indices
            perm = torch.randperm(len(train), generator=self.generator).tolist()
            self._order = [train[i] for i in perm]
        return self._order.pop()

    def train_step(self) -> dict:
        """One optimiser step on `batch_size` images (for 4D data: frames at different times),
        the loss averaged over them."""
        c = self.cfg
        step = self.step
        downscale = self.downscale_at(step)
        sh_degree = sh_degree_at(step, c)
        lr = self.lr_means(step)
        for g in self.optimizers["means"].param_groups:
            g["lr"] = lr
        if self.bases is not None:
            rotations, translations = self.optimizers["bases"].param_groups
            rotations["lr"] = self.lr_motion_at(step)
            translations["lr"] = rotations["lr"] * self.scene_extent

        frames = []
        for _ in range(c.batch_size):
            index = self.next_image()
            if self.background_mode == "random":
                background = torch.rand(3, generator=self.generator)
            else:
                background = self.eval_background
            gt, mask = self.ground_truth(index, background, downscale)
            image, _, info = self.render(index, background, sh_degree, downscale)
            if self.appearance is not None:
                image = self.appearance.apply(image, index)
            info["n_cameras"] = c.batch_size  # the loss averages over the batch: densification rescales by it
            self.strategy.step_pre_backward(self.params, self.optimizers, self.strategy_state, step, info)
            frames.append((image, gt, mask, info))
        loss = sum(losses.photometric_loss(image, gt, mask, c.ssim_lambda) for image, gt, mask, _ in frames) / len(
            frames
        )
        loss = loss + self.strategy.regularization(self.params)
        if self.xyzt:
            loss = loss + self.dynamic_regularization([f[3] for f in frames])
        if self.moving and c.motion_smoothness > 0:
            loss = loss + c.motion_smoothness * shared_motion.smoothness(self.bases)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"loss became {loss.item()} at step {step}; lower the learning rates or check the data "
                "(last checkpoint is kept)"
            )
        loss.backward()
        for opt in self.optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        if self.appearance is not None:
            self.appearance.step(self.progress(step))
        infos = [f[3] for f in frames]
        stats = self.strategy.step_post_backward(
            self.params,
            self.optimizers,
            self.strategy_state,
            step + 1,
            infos if len(infos) > 1 else infos[0],
            self.generator,
            lr_means=lr,
            progress=self.progress(step + 1),
        )
        self.step = step + 1
        psnr = sum(losses.psnr(image, gt, mask) for image, gt, mask, _ in frames) / len(frames)
        # (Gaussian, tile) pairs: what the compositing kernels' work follows (logged to metrics.jsonl)
        pairs = sum(int(f[3]["isect_ids"].numel()) for f in frames if f[3].get("isect_ids") is not None)
        return {"loss": loss.item(), "psnr": psnr, "tile_pairs": pairs, **stats}

    def dynamic_regularization(self, infos: list[dict]) -> torch.Tensor | float:
        """4D-Rotor's velocity consistency (train/dynamic.py) over the Gaussians alive at the step's times."""
        if self.cfg.velocity_consistency <= 0:
            return 0.0
        alive, velocities = dynamic.alive_velocities(infos)
        means = self.params["means"].detach().index_select(0, alive)
        term = dynamic.velocity_consistency(means, velocities, self.generator)
        return self.cfg.velocity_consistency * term

    # ------------------------------------------------------------------------------------------
    # what the run loop needs (base.py)

    def render_eval(self, index: int, background: torch.Tensor) -> torch.Tensor:
        time = float(self.data.camera(index).time) if self.dynamic else None
        return self.scene().render(self.cameras[index], background=background, time=time)["rgb"]

    def scene(self) -> GaussianScene:
        """The live Gaussians (not copied) at the SH degree the run has reached."""
        return GaussianScene(
            dict(self.params),
            cameras=self.cameras,
            source="training",
            sh_degree=sh_degree_at(self.step, self.cfg),
            bases=dict(self.bases) if self.bases is not None else None,
            rasterize_mode=self.cfg.rasterize_mode,
            eps2d=self.cfg.eps2d,
        )

    def model_stats(self) -> dict:
        return {"num_gaussians": self.num_gaussians}

    def model_text(self) -> str:
        return f"{self.num_gaussians:,} G"

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "train_seconds": self.train_seconds,
            "params": {k: v.detach().cpu() for k, v in self.params.items()},
            **({"bases": {k: v.detach().cpu() for k, v in self.bases.items()}} if self.bases is not None else {}),
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "strategy_state": self.strategy_state,
            "generator": self.generator.get_state(),
            "order": list(self._order),
            "config": self.cfg.to_json(),
            "model": self.cfg.model,  # "3d", "motion" or "4d"
            "normalization": self.data.normalization.to_dict(),
            **({"appearance": self.appearance.state_dict()} if self.appearance is not None else {}),
        }

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.train_seconds = float(state["train_seconds"])
        self.params = torch.nn.ParameterDict(
            {k: torch.nn.Parameter(v.to(self.device)) for k, v in state["params"].items()}
        )
        if "bases" in state:
            self.bases = torch.nn.ParameterDict(
                {k: torch.nn.Parameter(v.to(self.device)) for k, v in state["bases"].items()}
            )
        self.optimizers = self._make_optimizers()
        for k, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][k])
        self.strategy_state = state["strategy_state"]
        self.generator.set_state(state["generator"])
        self._order = list(state["order"])
        if self.appearance is not None and "appearance" in state:
            self.appearance.load_state_dict(state["appearance"])


def sh_degree_at(step: int, cfg: TrainConfig) -> int:
    return min(step // cfg.sh_degree_interval, cfg.sh_degree)
