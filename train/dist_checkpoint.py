"""Checkpoints of distributed runs: one file per rank, one folder per step.

    checkpoints/step_0001000/rank_0.pt ... rank_{R-1}.pt   each rank's shard (written then renamed)
    checkpoints/step_0001000/complete.json                 written by rank 0 once every shard is down

A step folder without complete.json is an interrupted save and is ignored. `merged_state` joins
the shards into the state of a single-process run (Gaussians, Adam moments and densification
statistics concatenated in rank order), which is how `splat export`, `splat eval`, `splat.load`
and `splat view` read a distributed run as one scene; `rank_state` gives a rank its own shard,
or its share of a run saved with another world size (re-sharding).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch

from splat.checkpoint_checks import PER_GAUSSIAN, check_fits, check_state
from splat.errors import InputError
from splat.io_utils import atomic_path, load_weights_only, read_json_object

COMPLETE = "complete.json"
MAX_WORLD_SIZE = 1 << 16  # ranks a checkpoint may name (each one a file read)
PER_GAUSSIAN_STRATEGY_KEYS = ("grad2d", "count")  # DefaultStrategy's running sums; the rest is shared
ADAM_BETAS = (0.9, 0.999)  # torch's defaults, which the single-process trainer uses


class DistributedCheckpointError(InputError):
    """A distributed checkpoint folder that cannot be used (message names it)."""


def is_distributed_checkpoint(path: Path) -> bool:
    return path.is_dir() and (path / COMPLETE).is_file()


def step_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:07d}"


def write_shard(run_dir: Path, step: int, rank: int, state: dict) -> Path:
    path = step_dir(run_dir, step) / f"rank_{rank}.pt"
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def complete(run_dir: Path, step: int, world_size: int, info: dict, keep: int) -> Path:
    """Rank 0, after every shard of `step` is written: mark it complete, drop older checkpoints."""
    folder = step_dir(run_dir, step)
    with atomic_path(folder / COMPLETE) as tmp:
        tmp.write_text(json.dumps({"step": step, "world_size": world_size, **info}, indent=1) + "\n")
    done = sorted(p.parent for p in (run_dir / "checkpoints").glob(f"step_*/{COMPLETE}"))
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for partial in (run_dir / "checkpoints").glob("step_*"):  # interrupted saves older than this one
        if partial.is_dir() and not (partial / COMPLETE).exists() and partial.name < folder.name:
            shutil.rmtree(partial, ignore_errors=True)
    return folder


def read_info(folder: Path) -> dict:
    """complete.json, with a `world_size` of 1..MAX_WORLD_SIZE ranks (DistributedCheckpointError)."""
    path = folder / COMPLETE
    info = read_json_object(path, DistributedCheckpointError)
    ranks = info.get("world_size")
    if isinstance(ranks, bool) or not isinstance(ranks, int) or not 1 <= ranks <= MAX_WORLD_SIZE:
        raise DistributedCheckpointError(
            f"{path}: 'world_size' must be a whole number of ranks in 1..{MAX_WORLD_SIZE}, got {str(ranks)[:40]}"
        )
    return info


def _load(path: Path) -> dict:
    state = load_weights_only(path, "checkpoint shard")  # weights only: a crafted shard cannot run code
    if not isinstance(state, dict):
        raise DistributedCheckpointError(f"{path}: not a checkpoint shard (holds a {type(state).__name__})")
    return state


def shards(folder: Path) -> list[dict]:
    """Every rank's shard, each checked (and against rank 0's structure) before they are merged."""
    parts = [_load(folder / f"rank_{r}.pt") for r in range(read_info(folder)["world_size"])]
    for r, part in enumerate(parts):
        _check_shard(folder / f"rank_{r}.pt", part, parts[0])
    return parts


def _check_shard(path: Path, part: dict, first: dict) -> None:
    """What merging reads: Gaussians and normalisation (checkpoint_checks), Adam states of one
    parameter (state key 0) with a learning rate, a strategy state, and rank 0's structure."""
    check_state(path, part)
    optimizers, strategy = part.get("optimizers"), part.get("strategy_state")
    if not isinstance(optimizers, dict) or not isinstance(strategy, dict):
        raise DistributedCheckpointError(f"{path}: not a checkpoint shard (needs 'optimizers' and 'strategy_state')")
    for name, opt in optimizers.items():
        groups = opt.get("param_groups") if isinstance(opt, dict) else None
        if (
            not isinstance(opt.get("state") if isinstance(opt, dict) else None, dict)
            or not set(opt["state"]) <= {0}
            or not isinstance(groups, list)
            or not groups
            or not all(isinstance(g, dict) and isinstance(g.get("lr"), (int, float)) for g in groups)
        ):
            raise DistributedCheckpointError(f"{path}: not a checkpoint shard (optimizer '{name}' is malformed)")
    batch = part.get("global_batch", 1)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise DistributedCheckpointError(f"{path}: 'global_batch' must be a positive number, got {str(batch)[:40]}")
    check_fits({k: first[k] for k in PER_GAUSSIAN}, part, path)  # what merging concatenates


def _merge_optimizer(states: list[dict], lr_scale: float) -> dict:
    """Adam state dicts of the shards (one parameter each) -> one, with unscaled hyperparameters."""
    merged = {"state": {}, "param_groups": [dict(g) for g in states[0]["param_groups"]]}
    if states[0]["state"]:
        first = states[0]["state"][0]
        merged["state"][0] = {
            k: (torch.cat([s["state"][0][k] for s in states]) if k in ("exp_avg", "exp_avg_sq") else v)
            for k, v in first.items()
        }
    for g in merged["param_groups"]:
        g["lr"] = g["lr"] / lr_scale
        g["betas"] = ADAM_BETAS
    return merged


def merged_state(folder: Path) -> dict:
    """The shards of one step as a single-process trainer state (rank order)."""
    parts = shards(folder)
    first = parts[0]
    lr_scale = math.sqrt(first.get("global_batch", 1))
    strategy = dict(first["strategy_state"])
    for key in PER_GAUSSIAN_STRATEGY_KEYS:
        values = [p["strategy_state"].get(key) for p in parts]
        strategy[key] = None if any(v is None for v in values) else torch.cat(values)
    return {
        **{k: v for k, v in first.items() if k not in ("params", "optimizers", "strategy_state", "shard_generator")},
        "params": {k: torch.cat([p["params"][k] for p in parts]) for k in first["params"]},
        "optimizers": {k: _merge_optimizer([p["optimizers"][k] for p in parts], lr_scale) for k in first["optimizers"]},
        "strategy_state": strategy,
        "world_size": len(parts),
    }


def _take(t: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    return torch.tensor_split(t, world_size)[rank].clone()


def rank_state(folder: Path, rank: int, world_size: int) -> dict:
    """This rank's state: its own shard when the world size matches, else its contiguous share
    of the merged run (a fresh shard generator; the trainer re-applies its hyperparameters)."""
    saved = read_info(folder)["world_size"]
    if saved == world_size:
        return _load(folder / f"rank_{rank}.pt")
    state = merged_state(folder)
    state["params"] = {k: _take(v, rank, world_size) for k, v in state["params"].items()}
    for opt in state["optimizers"].values():
        for k in ("exp_avg", "exp_avg_sq"):
            if opt["state"]:
                opt["state"][0][k] = _take(opt["state"][0][k], rank, world_size)
    for key in PER_GAUSSIAN_STRATEGY_KEYS:
        if state["strategy_state"].get(key) is not None:
            state["strategy_state"][key] = _take(state["strategy_state"][key], rank, world_size)
    state.pop("shard_generator", None)
    return state
