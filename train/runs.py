"""Run folders: start a training run, restore one from its folder, evaluate it, export it."""

from __future__ import annotations

from pathlib import Path

from splat.checkpoint_checks import check_fits, recorded_render_settings
from splat.datasets import Normalization
from splat.gaussians import gaussians_to_original
from splat.ply import save_ply
from splat.run_folder import (
    RunError,
    dataset_for,
    latest_checkpoint,
    read_checkpoint,
    read_newest_checkpoint,
    read_run_config,
)

from . import dist_checkpoint
from .config import TrainConfig, resolve_device
from .run_lock import holds_lock
from .trainer import Trainer

# state entries a checkpoint may lack: what load_state_dict treats as optional, and what it never reads
OPTIONAL_STATE = ("appearance", "shard_generator", "config", "model", "normalization", "rank", "world_size")


def new_trainer(data_path: str, run_dir: Path, config: TrainConfig, fmt: str | None = None) -> Trainer:
    config.device = resolve_device(config.device)
    config.validate()
    data = dataset_for(config, data_path, fmt)
    data.verify_images()  # a bad image stops the run here, before anything is written
    if config.model == "field":
        from .field_trainer import FieldTrainer

        return FieldTrainer(config, data, run_dir, data_path=data_path)
    if distributed_run():
        from .distributed import DistributedTrainer

        return DistributedTrainer(config, data, run_dir, data_path=data_path)
    return Trainer(config, data, run_dir, data_path=data_path)


def distributed_run() -> bool:
    from splat import distributed

    return distributed.is_active()


def restore_trainer(run_dir: Path, overrides: dict | None = None, data_path: str | None = None) -> Trainer:
    """The trainer of `run_dir` at its newest checkpoint (config overrides applied, e.g. steps)."""
    info = read_run_config(run_dir)
    settings = {**info["config"], **recorded_render_settings(info["config"])}
    try:
        cfg = TrainConfig.from_json({**settings, **(overrides or {})})
        cfg.validate()
    except TypeError as e:  # a value of the wrong type in config.json
        raise RunError(f"{run_dir / 'config.json'}: bad configuration ({e})") from None
    sharded = distributed_run() and cfg.model != "field"
    if sharded:  # each rank reads its own shard below, not the merged state of every rank
        ckpt_path = latest_checkpoint(run_dir)
        if ckpt_path is None:
            raise RunError(f"{run_dir}: no checkpoint to resume from (checkpoints/ is empty)")
        if not dist_checkpoint.is_distributed_checkpoint(ckpt_path):
            raise RunError(f"{ckpt_path}: a single-process checkpoint; resume it without --nproc")
    else:
        # the lock holder (resuming) sets damaged newer checkpoints aside
        ckpt_path, state = read_newest_checkpoint(run_dir, "resume from", set_aside=holds_lock(run_dir))
    trainer = new_trainer(data_path or info["data"], run_dir, cfg, fmt=info.get("format"))
    if sharded:
        state = dist_checkpoint.rank_state(ckpt_path, trainer.rank, trainer.world_size)
    # the checkpoint has the structure of this trainer's own state (else one line naming it), so a
    # failure while loading it is a bug (or, say, CUDA out of memory), reported as such
    check_fits(trainer.state_dict(), state, ckpt_path, optional=OPTIONAL_STATE)
    trainer.load_state_dict(state)
    return trainer


def export_ply(run_dir: Path, out: Path | None = None, checkpoint: Path | None = None) -> tuple[Path, int]:
    """Write the run's Gaussians as an INRIA PLY in the dataset's original frame."""
    if checkpoint is not None:
        ckpt_path, state = checkpoint, read_checkpoint(checkpoint)
    else:
        ckpt_path, state = read_newest_checkpoint(run_dir, "export", set_aside=holds_lock(run_dir))
    if state.get("model") == "field":
        raise RunError(f"{run_dir}: a neural-field run has no Gaussians to export (render it with `splat render`)")
    params = state["params"]
    norm = Normalization.from_dict(state["normalization"])
    out = out or run_dir / "point_cloud.ply"
    save_ply(out, gaussians_to_original(params, norm))
    return out, int(params["means"].shape[0])
