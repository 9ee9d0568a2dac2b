"""A run folder: what `splat train` writes, and what training (resume), `splat eval`, `splat
export`, `splat render` and the viewer (through `splat.load`) read back.

    config.json        resolved configuration, dataset, normalisation
    plan.txt           the plan line the run started with (for report.html)
    metrics.jsonl      training log lines and evaluation results (one JSON object per line)
    checkpoints/       step_NNNNNNN.pt (written then renamed; the newest few are kept), every
                       `checkpoint_every` steps and `checkpoint_minutes` of training; a distributed
                       run writes step_NNNNNNN/ folders of per-rank shards (train/dist_checkpoint.py)
    .lock              the OS lock of the process training in the folder (train/run_lock.py)
    renders/step_N/    test renders side by side with ground truth (ground truth | render)
    report.html        the run at a glance (splat/report.py)

Checkpoints are read without running code (`splat.io_utils.load_weights_only`); a damaged newest
checkpoint gives way to the one before it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from splat.errors import InputError
from splat.io_utils import DamagedCheckpointError, load_weights_only, read_json_object

if TYPE_CHECKING:
    from splat.datasets import SceneDataset
    from splat.train.config import TrainConfig


class RunError(InputError):
    """A run folder that cannot be used (message names the folder or file)."""


# ----------------------------------------------------------------------------------------------
# checkpoints


def checkpoint_paths(run_dir: str | os.PathLike) -> list[Path]:
    """step_N.pt files, and step_N/ folders of distributed runs once complete (dist_checkpoint.py)."""
    folder = Path(run_dir) / "checkpoints"
    return sorted(
        [*folder.glob("step_*.pt"), *(p.parent for p in folder.glob("step_*/complete.json"))], key=lambda p: p.name
    )


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    paths = checkpoint_paths(run_dir)
    return paths[-1] if paths else None


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A splat checkpoint as a dict: a .pt file read weights-only (load_weights_only), or a
    distributed run's step folder, its shards merged into one single-process state; its contents
    checked before anything is built from them (splat.checkpoint_checks)."""
    from splat.checkpoint_checks import check_state

    path = Path(path)
    if path.is_dir():
        from splat.train import dist_checkpoint

        return check_state(path, dist_checkpoint.merged_state(path))
    return check_state(path, load_weights_only(path))


def read_newest_checkpoint(run_dir: str | os.PathLike, what: str = "read", set_aside: bool = False):
    """(path, state) of a run folder's newest complete checkpoint (a step_N.pt file, or a
    distributed run's complete step_N/ folder). A run training meanwhile may delete an old one as
    it saves a new one: then the new one is read. A damaged newest checkpoint (empty or cut short,
    as a power loss can leave one) gives way to the newest readable one before it, with a warning;
    `set_aside` (the lock holder, resuming) renames the damaged ones `damaged-step_N...`, so that
    new checkpoints are newer than anything left. A checkpoint refused for its contents (one that
    asks to run code, say) is not skipped: it stops the command."""
    import sys

    run_dir = Path(run_dir)
    for _ in range(3):
        paths = checkpoint_paths(run_dir)
        if not paths:
            raise InputError(f"{run_dir}: no checkpoint to {what} (checkpoints/ is empty)")
        damaged: list[tuple[Path, InputError]] = []
        for path in reversed(paths):
            try:
                state = read_checkpoint(path)
            except InputError as e:
                if not path.exists():
                    break  # deleted by the run training meanwhile: list them again
                if not isinstance(e, DamagedCheckpointError):
                    raise
                damaged.append((path, e))
                continue
            for bad, error in damaged:
                note = ""
                if set_aside:
                    aside = bad.with_name(f"damaged-{bad.name}")
                    os.replace(bad, aside)
                    note = f" (renamed {aside.name})"
                print(f"warning: {error}{note}; using {path.name}, the newest readable checkpoint", file=sys.stderr)
            return path, state
        else:
            raise damaged[0][1]
    raise InputError(f"{run_dir}: its checkpoints keep disappearing while being read")


# ----------------------------------------------------------------------------------------------
# config.json and the run's dataset


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


def run_background(path: Path) -> str:
    """The background a run folder trained on (config.json records it), else white."""
    from splat.errors import is_user_error

    if not (path / "config.json").is_file():
        return "white"
    try:
        config = read_json_object(path / "config.json").get("config")
    except Exception as e:  # noqa: BLE001 - a bad config.json is reported by the scene loader
        if not is_user_error(e):
            raise
        return "white"
    background = config.get("background") if isinstance(config, dict) else None
    return background if background in ("white", "black") else "white"


def dataset_for(config: TrainConfig, data_path: str, fmt: str | None = None) -> SceneDataset:
    """The dataset a run trains on; an automatic downscale (0) is resolved and recorded in
    `config`, so a resumed or re-evaluated run reads the same images."""
    from splat.datasets import load_dataset
    from splat.train.config import MAX_IMAGE_SIDE, MOVING_MODELS, device_kind

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
        frame_times=config.model in MOVING_MODELS,  # a posed video trains as a moving scene when asked
    )
    config.downscale = data.downscale
    return data


def run_dataset(info: dict) -> SceneDataset:
    """The dataset of a saved run (its config.json as a dict), read as the run trained on it."""
    from splat.datasets import load_dataset
    from splat.train.config import MOVING_MODELS

    config = info["config"]
    return load_dataset(
        info["data"],
        format=info.get("format"),
        downscale=int(config.get("downscale", 1)),
        repair_poses=config.get("pose_repair", "off") == "auto",  # older runs: the poses as given
        frame_times=config.get("model") in MOVING_MODELS,
    )
