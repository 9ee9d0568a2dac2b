"""Running a trainer for a command (`splat train`, `splat demo`): the device a `--device` flag
names, a new run folder (photos or a video posed first), the plan line, training with a progress
bar (and a live viewer), the report at the end and the evaluation lines."""

from __future__ import annotations

import time
from pathlib import Path

from splat.errors import InputError as UserError  # a bad flag: reported as one line, no traceback


def device(name: str) -> str:
    """The device to use: "auto" is CUDA where available, else the CPU."""
    import torch

    from splat.train.config import resolve_device

    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here (use --device cpu or auto)")
    return resolve_device(name)


def train(trainer, run_dir: Path, viewer_port: int | None = None, viewer_host: str = "127.0.0.1") -> dict | None:
    """Train with a progress bar (and a live viewer); None when interrupted (checkpoint saved)."""
    from splat.progress import TrainProgress

    progress = TrainProgress(trainer, quiet=not getattr(trainer, "is_main_rank", True))
    hook = progress
    viewer = None
    if viewer_port is not None:
        from splat.viewer.app import Viewer

        live = trainer.live_run()
        viewer = Viewer(live.scene, host=viewer_host, port=viewer_port, title=f"training {run_dir.name}", live=live)
        print(f"live viewer at {viewer.url}")

        def hook(tr, out):
            progress(tr, out)
            while live.paused and not tr.interrupted:
                time.sleep(0.1)

    try:
        result = trainer.train(hook)
    finally:
        progress.close()
        if viewer is not None:
            viewer.close()
    if getattr(trainer, "is_main_rank", True):
        from splat.report import write_report

        write_report(run_dir)  # also after an interruption: the run so far
    if trainer.interrupted:
        print(f"interrupted at step {trainer.step}; checkpoint saved. Resume with: splat train --resume {run_dir}")
        return None
    return result


def eval_steps(every: int | None, steps: int, current: list) -> list:
    """The steps to evaluate at: every `every` steps (`--eval-every`), else those of `current` up to `steps`."""
    if every is not None:
        if every < 1:
            raise UserError("--eval-every must be positive")
        return list(range(every, steps + 1, every))
    return [s for s in current if s <= steps]


def resume_run(run_dir: Path, over: dict, data: str | None, eval_every: int | None):
    """(trainer, run folder) of the run in `run_dir` at its newest checkpoint, `over` applied and
    the folder locked before its checkpoint is read (a second writer stops here)."""
    from splat.run_folder import read_run_config
    from splat.train.run_lock import lock_run
    from splat.train.runs import restore_trainer

    info = read_run_config(run_dir)
    lock_run(run_dir)  # held until the process exits
    steps = over.get("steps", info["config"]["steps"])
    over["eval_steps"] = eval_steps(eval_every, steps, info["config"]["eval_steps"])
    trainer = restore_trainer(run_dir, over, data_path=data)
    print(f"resuming {run_dir} at step {trainer.step} of {trainer.cfg.steps}")
    return trainer, run_dir


def new_run(data: str, out: str | None, cfg, fmt: str | None, num_frames: int):
    """(trainer, run folder) of a new run on `data` (photos or a video: posed first, on rank 0),
    in `out` or outputs/<scene>/<date-time>; the folder is locked, and refused if it holds a run."""
    from splat import distributed
    from splat.train.run_lock import lock_run
    from splat.train.runs import new_trainer

    name = scene_name(data)
    if distributed.world()[0] == 0:  # photos or a video: rank 0 poses them, the others wait
        data = pose_if_needed(data, num_frames)
    data = distributed.same_everywhere(data)
    run_dir = Path(out) if out else Path("outputs") / name / time.strftime("%Y%m%d-%H%M%S")
    run_dir = distributed.same_everywhere(run_dir)
    if (run_dir / "config.json").exists():
        raise UserError(f"{run_dir}: already holds a run (resume it with --resume {run_dir}, or choose --out)")
    trainer = new_trainer(data, run_dir, cfg, fmt=fmt)  # checks the data, writes nothing
    lock_run(run_dir)  # held until the process exits; then check again: a run may have started meanwhile
    if (run_dir / "config.json").exists():
        raise UserError(f"{run_dir}: already holds a run (resume it with --resume {run_dir}, or choose --out)")
    note = f" ({trainer.init_note})" if trainer.init_note else ""
    print(f"{trainer.data.summary()}\n{trainer.model_text()} at the start{note} -> {run_dir}")
    return trainer, run_dir


def scene_name(data: str) -> str:
    from splat.datasets.capture import default_output, is_capture

    return default_output(data).parent.name if is_capture(data) else Path(data).resolve().name


def pose_if_needed(data: str, num_frames: int) -> str:
    """Photos or a video: posed first (kept in outputs/<name>/data, so the next run reuses them)."""
    from splat.datasets.capture import default_output, find_capture, is_capture, plan_text, process_capture

    if not is_capture(data):
        return data
    capture = find_capture(data)
    out = default_output(data)
    print(f"plan: {plan_text(capture, num_frames)} -> {out} (kept for later runs)", flush=True)
    result = process_capture(data, out, num_frames=num_frames, capture=capture)
    print(result.summary(), flush=True)
    return str(out.resolve())  # the run's config names it wherever the run is resumed from


def write_plan(trainer, run_dir: Path) -> str:
    """Print the plan line (splat.progress.plan_line), and keep it in plan.txt for the run's report.html."""
    from splat import distributed
    from splat.progress import plan_line

    plan = plan_line(trainer)
    print(plan)
    if distributed.world()[0] == 0:
        from splat.io_utils import atomic_path

        with atomic_path(run_dir / "plan.txt") as tmp:
            tmp.write_text(plan + "\n")
    return plan


def print_eval(result: dict) -> None:
    """One line per scored split: test (or train where there is none), then val where there is one."""
    if result:
        for e in (result[k] for k in ("eval", "eval_val") if k in result):
            lpips = "LPIPS n/a" if e.get("lpips") is None else f"LPIPS {e['lpips']:.4f}"
            print(
                f"eval at step {result['step']}: PSNR {e['psnr']:.2f} dB, SSIM {e['ssim']:.4f}, {lpips} on "
                f"{e['num_images']} {e['split']} images"
            )
