"""Run folders: start a training run, restore one from its folder, evaluate it, export it."""

from __future__ import annotations

from pathlib import Path

from splat.checkpoint_checks import check_fits
from splat.datasets import Normalization, SceneDataset, load_dataset
from splat.errors import InputError
from splat.gaussians import gaussians_to_original
from splat.io_utils import read_checkpoint, read_json_object, read_newest_checkpoint
from splat.ply import save_ply

from . import dist_checkpoint
from .config import MAX_IMAGE_SIDE, TrainConfig, device_kind, resolve_device
from .run_lock import holds_lock
from .trainer import Trainer

# state entries a checkpoint may lack: what load_state_dict treats as optional, and what it never reads
OPTIONAL_STATE = ("appearance", "shard_generator", "config", "model", "normalization", "rank", "world_size")


class RunError(InputError):
    """A run folder that cannot be used (message names the folder or file)."""


def read_run_config(run_dir: Path) -> dict:
    path = run_dir / "config.json"
    if not path.is_file():
        raise RunError(f"{path}: not a splat run folder (config.json is missing)")
    info = read_json_object(path, RunError)
    if not isinstance(info.get("config"), dict) or not isinstance(info.get("data"), str):
        raise RunError(f"{path}: not a splat run configuration (needs a 'config' object and a 'data' path)")
    steps, eval_steps = info["config"].get("steps"), info["config"].get("eval_steps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise RunError(f"{path}: 'config' needs 'steps', a positive whole number (got {str(steps)[:40]})")
    if not isinstance(eval_steps, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in eval_steps):
        raise RunError(f"{path}: 'config' needs 'eval_steps', a list of step numbers (got {str(eval_steps)[:40]})")
    return info


def dataset_for(config: TrainConfig, data_path: str, fmt: str | None = None) -> SceneDataset:
    """The run's dataset; an automatic downscale (0) is resolved and recorded in `config`, so a
    resumed or re-evaluated run reads the same images."""
    bg = (0.0, 0.0, 0.0) if config.background == "black" else (1.0, 1.0, 1.0)
    data = load_dataset(
        data_path,
        format=fmt,
        downscale=config.downscale,
        background=bg,
        test_every=config.test_every,
        cache_bytes=int(config.cache_gb * (1 << 30)),
        max_side=MAX_IMAGE_SIDE[device_kind(config.device)],
        repair_poses=config.pose_repair == "auto",
    )
    config.downscale = data.downscale
    return data


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


def load_checkpoint(path: Path) -> dict:
    """A checkpoint's state, read weights-only (a crafted file cannot run code; InputError if bad);
    a distributed run's step folder reads as one single-process state."""
    return read_checkpoint(path)


def newest_checkpoint(run_dir: Path, what: str) -> tuple[Path, dict]:
    """(path, state) of the newest readable checkpoint (see io_utils.read_newest_checkpoint); the
    lock holder (resuming) sets damaged newer ones aside."""
    return read_newest_checkpoint(run_dir, what, set_aside=holds_lock(run_dir))


def restore_trainer(run_dir: Path, overrides: dict | None = None, data_path: str | None = None) -> Trainer:
    """The trainer of `run_dir` at its newest checkpoint (config overrides applied, e.g. steps)."""
    info = read_run_config(run_dir)
    try:
        cfg = TrainConfig.from_json({**info["config"], **(overrides or {})})
        cfg.validate()
    except TypeError as e:  # a value of the wrong type in config.json
        raise RunError(f"{run_dir / 'config.json'}: bad configuration ({e})") from None
    sharded = distributed_run() and cfg.model != "field"
    if sharded:  # each rank reads its own shard below, not the merged state of every rank
        from .base import latest_checkpoint

        ckpt_path = latest_checkpoint(run_dir)
        if ckpt_path is None:
            raise RunError(f"{run_dir}: no checkpoint to resume from (checkpoints/ is empty)")
        if not dist_checkpoint.is_distributed_checkpoint(ckpt_path):
            raise RunError(f"{ckpt_path}: a single-process checkpoint; resume it without --nproc")
    else:
        ckpt_path, state = newest_checkpoint(run_dir, "resume from")
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
        ckpt_path, state = checkpoint, load_checkpoint(checkpoint)
    else:
        ckpt_path, state = newest_checkpoint(run_dir, "export")
    if state.get("model") == "field":
        raise RunError(f"{run_dir}: a neural-field run has no Gaussians to export (render it with `splat render`)")
    params = state["params"]
    norm = Normalization.from_dict(state["normalization"])
    out = out or run_dir / "point_cloud.ply"
    save_ply(out, gaussians_to_original(params, norm))
    return out, int(params["means"].shape[0])
