"""Densification strategies as small objects with explicit state (after gsplat's `strategy/`).

The trainer calls `step_pre_backward` before `loss.backward()` and `step_post_backward` after the
optimiser step; a strategy may add a regularisation term to the loss. Both strategies obey a
hard `max_gaussians` cap so no run dies of memory.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import torch

from . import ops
from .ops import Optimizers, Params


@dataclasses.dataclass
class DefaultStrategy:
    """INRIA 3DGS adaptive density control: clone small / split large Gaussians whose average
    screen-space position gradient exceeds `grow_grad2d`, prune transparent (and, after the first
    opacity reset, oversized) ones, reset opacities periodically. Gradients are scaled by half
    the image size and the camera count, as gsplat, so the 2e-4 threshold carries over.

    "Oversized" is INRIA's `prune_scale3d` x scene scale inside the scene's radius, and grows with
    the distance beyond it (a limit on angular size): distant background is large in world units
    and the fixed limit pruned it away (beer: 23.8 -> 19.8 dB mid-run).

    Under a time budget the run's length in steps is unknown, so the schedule's milestones also
    hold as fractions of `total_steps` (the configured steps): densification stops at
    `refine_stop_iter / total_steps` of the run, and an opacity reset needs `reset_every` steps'
    worth of densification after it (INRIA: the last reset at 12k of 30k, densifying until 15k).
    For a run limited by steps alone both rules are the step rules."""

    prune_opa: float = 0.005
    grow_grad2d: float = 0.0002
    grow_scale3d: float = 0.01
    prune_scale3d: float = 0.1
    refine_start_iter: int = 500
    refine_stop_iter: int = 15_000
    refine_every: int = 100
    reset_every: int = 3000
    absgrad: bool = False
    revised_opacity: bool = False
    max_gaussians: int = 3_000_000
    last_reset_before: float = 0.8  # no opacity reset in the last 20% of a run (it needs ~1k steps to recover)
    total_steps: int = 30_000  # the configured run length, for the fractions above

    def initialize_state(self, scene_scale: float, n: int) -> dict[str, Any]:
        # running sums are (re)sized lazily on the parameters' device
        return {"scene_scale": scene_scale, "grad2d": None, "count": None}

    def regularization(self, params: Params) -> torch.Tensor | float:
        return 0.0

    def step_pre_backward(
        self, params: Params, optimizers: Optimizers, state: dict[str, Any], step: int, info: dict[str, Any]
    ) -> None:
        info["means2d"].retain_grad()  # called once per rendered image of the step

    def step_post_backward(
        self,
        params: Params,
        optimizers: Optimizers,
        state: dict[str, Any],
        step: int,
        info: dict[str, Any],
        generator: torch.Generator,
        lr_means: float | None = None,
        progress: float = 0.0,
    ) -> dict:
        """`progress`: the run's completed fraction (by steps, or by time under a time budget)."""
        stats = {}
        stop_fraction = self.refine_stop_iter / max(self.total_steps, 1)
        if step >= self.refine_stop_iter or progress >= stop_fraction:
            return stats
        self._accumulate(state, info)
        if step > self.refine_start_iter and step % self.refine_every == 0:
            stats.update(self._grow(params, optimizers, state, generator))
            stats.update(self._prune(params, optimizers, state, step))
            state["grad2d"] = state["count"] = None
        densify_after = progress + self.reset_every / max(self.total_steps, 1) <= stop_fraction + 1e-9
        if step % self.reset_every == 0 and step > 0 and progress < self.last_reset_before and densify_after:
            ops.reset_opacity(params, optimizers, value=self.prune_opa * 2.0)
            stats["opacity_reset"] = True
        return stats

    def _accumulate(self, state, info) -> None:
        """Add each visible Gaussian's screen-space gradient norm; `info` is one render's meta or a
        list of them (a batch rendered separately)."""
        if isinstance(info, list):
            for one in info:
                self._accumulate(state, one)
            return
        means2d = info["means2d"]
        grads = (means2d.absgrad if self.absgrad else means2d.grad).detach().clone()
        grads[..., 0] *= info["width"] / 2.0 * info["n_cameras"]
        grads[..., 1] *= info["height"] / 2.0 * info["n_cameras"]
        if state["grad2d"] is None:
            n = info["num_gaussians"] if "num_gaussians" in info else grads.shape[1]
            state["grad2d"] = torch.zeros(n, device=grads.device)
            state["count"] = torch.zeros(n, device=grads.device)
        visible = (info["radii"] > 0).all(dim=-1)  # (C, N rendered)
        ids = visible.nonzero(as_tuple=True)[1]
        if info.get("gaussian_ids") is not None:  # 4D: only the Gaussians alive at this time were rendered
            ids = info["gaussian_ids"][ids]
        state["grad2d"].index_add_(0, ids, grads[visible].norm(dim=-1))
        state["count"].index_add_(0, ids, torch.ones(ids.shape[0], device=grads.device))

    def size_limit(self, params: Params, scene_scale: float) -> torch.Tensor:
        """Per-Gaussian largest allowed scale: prune_scale3d x max(scene scale, distance from the
        scene centre) (the normalised frame's origin)."""
        distance = params["means"].data[:, :3].norm(dim=-1)
        return self.prune_scale3d * distance.clamp(min=scene_scale)

    def _grow(self, params, optimizers, state, generator) -> dict:
        grads = state["grad2d"] / state["count"].clamp(min=1)
        high = grads > self.grow_grad2d
        small = ops.spatial_scale_max(params) <= self.grow_scale3d * state["scene_scale"]
        dupli, split = high & small, high & ~small
        # respect the cap: keep the candidates with the largest gradients that fit
        n = params["means"].shape[0]
        room = self.max_gaussians - n
        n_dupli, n_split = int(dupli.sum()), int(split.sum())
        if n_dupli + n_split > room:
            budget = max(room, 0)
            order = torch.argsort(torch.where(high, grads, torch.full_like(grads, -1.0)), descending=True)
            chosen = torch.zeros_like(high)
            chosen[order[:budget]] = True
            dupli, split = dupli & chosen, split & chosen
            n_dupli, n_split = int(dupli.sum()), int(split.sum())
        if n_dupli:
            ops.duplicate(params, optimizers, dupli)
        if n_split:
            split = torch.cat([split, split.new_zeros(n_dupli)])  # clones are not split
            ops.split(params, optimizers, split, generator, self.revised_opacity)
        return {"duplicated": n_dupli, "split": n_split}

    def _prune(self, params, optimizers, state, step) -> dict:
        prune = torch.sigmoid(params["opacities"].data) < self.prune_opa
        if step > self.reset_every:
            prune |= ops.spatial_scale_max(params) > self.size_limit(params, state["scene_scale"])
        n_prune = int(prune.sum())
        if n_prune and n_prune < prune.numel():
            ops.remove(params, optimizers, prune)
        return {"pruned": n_prune}


@dataclasses.dataclass
class MCMCStrategy:
    """3DGS as MCMC (Kheradmand et al. 2024, gsplat's defaults): relocate dead Gaussians onto live
    ones, grow 5% per refinement up to `cap_max`, add opacity-gated position noise every step,
    regularise opacity and scale."""

    cap_max: int = 1_000_000
    noise_lr: float = 5e5
    refine_start_iter: int = 500
    refine_stop_iter: int = 25_000
    refine_every: int = 100
    min_opacity: float = 0.005
    opacity_reg: float = 0.01
    scale_reg: float = 0.01
    max_gaussians: int = 3_000_000

    def initialize_state(self, scene_scale: float, n: int) -> dict[str, Any]:
        return {"binoms": ops.binomial_table()}

    def regularization(self, params: Params) -> torch.Tensor:
        return (
            self.opacity_reg * torch.sigmoid(params["opacities"]).mean()
            + self.scale_reg * torch.exp(params["scales"][:, :3]).mean()
        )

    def step_pre_backward(
        self, params: Params, optimizers: Optimizers, state: dict[str, Any], step: int, info: dict[str, Any]
    ) -> None:
        pass

    def step_post_backward(
        self,
        params: Params,
        optimizers: Optimizers,
        state: dict[str, Any],
        step: int,
        info: dict[str, Any],
        generator: torch.Generator,
        lr_means: float | None = None,
        progress: float = 0.0,
    ) -> dict:
        stats = {}
        if self.refine_start_iter < step < self.refine_stop_iter and step % self.refine_every == 0:
            dead = torch.sigmoid(params["opacities"].data) <= self.min_opacity
            stats["relocated"] = ops.relocate(params, optimizers, dead, state["binoms"], generator, self.min_opacity)
            n = params["means"].shape[0]
            target = min(self.cap_max, self.max_gaussians, int(1.05 * n))
            stats["added"] = ops.sample_add(
                params, optimizers, max(0, target - n), state["binoms"], generator, self.min_opacity
            )
        if lr_means is not None:
            ops.inject_position_noise(params, lr_means * self.noise_lr, generator)
        return stats


class Strategy(Protocol):
    """What the trainer calls (the module docstring); `state` is the strategy's checkpointed state."""

    def initialize_state(self, scene_scale: float, n: int) -> dict[str, Any]: ...

    def regularization(self, params: Params) -> torch.Tensor | float: ...

    def step_pre_backward(
        self, params: Params, optimizers: Optimizers, state: dict[str, Any], step: int, info: dict[str, Any]
    ) -> None: ...

    def step_post_backward(self, params, optimizers, state, step, info, generator, **schedule) -> dict[str, Any]:
        """After the optimiser step; `schedule`: lr_means (the step's position rate) and progress."""


STRATEGIES: dict[str, type] = {"default": DefaultStrategy, "mcmc": MCMCStrategy}


def make_strategy(config) -> Strategy:
    """The strategy a TrainConfig names, with its settings (the strategy's defaults for the fields
    left None were filled by the config: STRATEGY_DEFAULTS)."""
    common = dict(
        refine_start_iter=config.refine_start,
        refine_stop_iter=config.refine_stop,
        refine_every=config.refine_every,
        max_gaussians=config.max_gaussians,
    )
    if config.strategy == "mcmc":
        return MCMCStrategy(cap_max=config.mcmc_cap_max, **common)
    return DefaultStrategy(
        reset_every=config.reset_every,
        grow_grad2d=config.grow_grad2d,
        absgrad=config.absgrad,
        total_steps=config.steps,
        **common,
    )
