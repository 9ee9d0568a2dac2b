"""Run folders: start a training run, restore one from its folder, evaluate it, export it."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from splat.datasets import Normalization, load_dataset
from splat.ply import save_ply

from .config import MAX_IMAGE_SIDE, TrainConfig, device_kind, resolve_device
from .trainer import Trainer, latest_checkpoint


class RunError(ValueError):
    """A run folder that cannot be used (message names the folder or file)."""


def read_run_config(run_dir: Path) -> dict:
    path = run_dir / "config.json"
    if not path.is_file():
        raise RunError(f"{path}: not a splat run folder (config.json is missing)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RunError(f"{path}: malformed JSON ({e})") from None


def dataset_for(config: TrainConfig, data_path: str, fmt: str | None = None):
    """The run's dataset; an automatic downscale (0) is resolved and recorded in `config`, so a
    resumed or re-evaluated run reads the same images."""
    bg = (0.0, 0.0, 0.0) if config.background == "black" else (1.0, 1.0, 1.0)
    data = load_dataset(data_path, format=fmt, downscale=config.downscale, background=bg,
                        test_every=config.test_every, cache_bytes=int(config.cache_gb * (1 << 30)),
                        max_side=MAX_IMAGE_SIDE[device_kind(config.device)])  # fmt: skip
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
    return Trainer(config, data, run_dir, data_path=data_path)


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - torch raises many types for damaged files
        raise RunError(f"{path}: unreadable checkpoint ({e.__class__.__name__}: {e})") from None


def restore_trainer(run_dir: Path, overrides: dict | None = None, data_path: str | None = None) -> Trainer:
    """The trainer of `run_dir` at its newest checkpoint (config overrides applied, e.g. steps)."""
    info = read_run_config(run_dir)
    cfg = TrainConfig.from_json({**info["config"], **(overrides or {})})
    ckpt_path = latest_checkpoint(run_dir)
    if ckpt_path is None:
        raise RunError(f"{run_dir}: no checkpoint to resume from (checkpoints/ is empty)")
    state = load_checkpoint(ckpt_path)
    trainer = new_trainer(data_path or info["data"], run_dir, cfg, fmt=info.get("format"))
    trainer.load_state_dict(state)
    return trainer


def export_ply(run_dir: Path, out: Path | None = None, checkpoint: Path | None = None) -> tuple[Path, int]:
    """Write the run's Gaussians as an INRIA PLY in the dataset's original frame."""
    ckpt_path = checkpoint or latest_checkpoint(run_dir)
    if ckpt_path is None:
        raise RunError(f"{run_dir}: no checkpoint to export (checkpoints/ is empty)")
    state = load_checkpoint(ckpt_path)
    if state.get("model") == "field":
        raise RunError(f"{run_dir}: a neural-field run has no Gaussians to export (render it with `splat render`)")
    params = state["params"]
    norm = Normalization.from_dict(state["normalization"])
    out = out or run_dir / "point_cloud.ply"
    save_ply(out, norm.gaussians_to_original(params))
    return out, int(params["means"].shape[0])
