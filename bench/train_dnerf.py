#!/usr/bin/env python
"""Monocular dynamic data: D-NeRF's lego (../shared/datasets/dnerf_lego_100, 100x100, RGB on
black) trained with the defaults (moving 3D Gaussians, splat/motion.py) and with one setting
changed, and as 4D (XYZT) Gaussians with one piece of their training switched on or off.

    python bench/train_dnerf.py                                     # every variant, 2000 steps each
    python bench/train_dnerf.py --variants defaults --seconds 300   # the 5-minute run by time
    python bench/train_dnerf.py --variants defaults --as-cli        # what `splat train DATA` runs

Each variant is `splat train`'s configuration for this machine (preset auto) with a few fields
changed (VARIANTS), trained for `--steps` steps (its schedule over those steps, densification
stopping half-way, so that a machine shared with other work changes the time, not the result)
or, with `--seconds`, for that much training time, or, with `--as-cli`, with the budget `splat
train` gives it (the preset's, and the model's: train/config.py PRESET_MODEL_DEFAULTS); also scored
at step `--at-step`. Scores: PSNR on the val and test splits and on the training frames (the gap
says how much the model memorised frames rather than learned motion). Results merge into
bench/results/train_dnerf-<device>.json by variant name, each with the commit and date it ran
at, so variants run at different times stay side by side.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS, cpu_steal_seconds, evaluations, header, run_records, shared_data, write_result

HERE = Path(__file__).resolve().parent

# name -> TrainConfig fields changed from the defaults (what `splat train DATA` runs)
VARIANTS: dict[str, dict] = {
    "defaults": {},  # moving 3D Gaussians (model motion) since auto picks them for monocular data
    "4d": {"model": "4d"},  # XYZT Gaussians with the pieces below (the default before)
    "motion_classic": {"rasterize_mode": "classic"},  # no antialiasing (the default before)
    "motion_knots_4": {"motion_knots": 4},
    "motion_knots_6": {"motion_knots": 6},
    "motion_knots_16": {"motion_knots": 16},
    "motion_knots_50": {"motion_knots": 50},  # about one knot per training frame
    "motion_bases_16": {"motion_bases": 16},
    "motion_bases_64": {"motion_bases": 64},
    "motion_lr_1e-3": {"lr_motion": 1e-3},
    "motion_lr_1e-4": {"lr_motion": 1e-4},
    "motion_smoothness_0": {"motion_smoothness": 0.0},
    "motion_weights_lr_3e-2": {"lr_motion_weights": 3e-2},
    "motion_sh_degree_1": {"sh_degree": 1},  # less view-dependent colour to fit each frame's one view with
    "motion_sh_degree_0": {"sh_degree": 0},
    "motion_batch2": {"batch_size": 2},  # two frames (two times, two views) a step
    "motion_grow_4e-4": {"grow_grad2d": 4e-4},  # fewer Gaussians: less to fit each frame's one view with
    # 4D (XYZT) Gaussians, one piece changed (measured when they were the default for this data)
    "white": {"model": "4d", "background": "white"},  # what --background auto picked before it read the images
    "time_scale_0.05": {"model": "4d", "init_time_scale": 0.05},  # about the frame spacing (0.02) x 2.5
    "time_scale_0.5": {"model": "4d", "init_time_scale": 0.5},
    "time_scale_1": {"model": "4d", "init_time_scale": 1.0},
    "batch4": {"model": "4d", "batch_size": 4},
    "no_warmup": {"model": "4d", "resolution_schedule": []},
    "static_3d": {"model": "3d"},  # no time at all: what the moving parts cost a static model
    "batch3": {"model": "4d", "batch_size": 3},  # 4D-Rotor's frames per step
    "velocity": {"model": "4d", "velocity_consistency": 0.05},  # 4D-Rotor's weight
    "lr_means_x5": {"model": "4d", "lr_means": 8e-4, "lr_means_final": 8e-6},  # 4D-Rotor's D-NeRF position rate
    "sh_degree_1": {"model": "4d", "sh_degree": 1},  # less view-dependent colour to fit each frame's one view with
    "sh_degree_0": {"model": "4d", "sh_degree": 0},
    "velocity_0.2": {"model": "4d", "velocity_consistency": 0.2},
    "velocity_1": {"model": "4d", "velocity_consistency": 1.0},
    "velocity_0.2+lr_means_x5": {"model": "4d", "velocity_consistency": 0.2, "lr_means": 8e-4, "lr_means_final": 8e-6},
    "velocity_0.2+time_scale_1": {"model": "4d", "velocity_consistency": 0.2, "init_time_scale": 1.0},
}

# Lego's val PSNR in another paper's table, to place the numbers above (not to rank them: those
# ran at 800x800 on a GPU for tens of thousands of steps). Read from Table 1 of Yang et al.,
# "Deformable 3D Gaussians" (CVPR 2024, arXiv 2309.13101), which scores lego on its val split.
PUBLISHED = {
    "source": "Yang et al. 2024, Deformable 3D Gaussians, Table 1 (arXiv 2309.13101; the table is "
    "assets/results/D-NeRF/Quantitative.jpg in github.com/ingra14m/Deformable-3D-Gaussians)",
    "resolution": "800x800",
    "split": "val (the paper's choice for lego, whose test split disagrees with its training split)",
    "val_psnr": {
        "3dgs_static": 22.10,
        "tensor4d": 23.24,
        "dnerf": 25.56,
        "tineuvox": 26.64,
        "kplanes": 28.91,
        "deformable_3dgs": 33.07,
    },
}


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
        return out.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def train_psnr(trainer) -> float:
    """Mean PSNR over every training frame (rendered as evaluation renders them)."""
    import torch

    from splat.train.losses import psnr

    values = []
    with torch.no_grad():
        for i in trainer.data.train_indices:
            gt, mask = trainer.ground_truth(i, trainer.eval_background)
            values.append(psnr(trainer.render_eval(i, trainer.eval_background).clamp(0, 1), gt, mask))
    return sum(values) / len(values)


def run_variant(name: str, overrides: dict, data: Path, budget: dict, at_step: int, out: Path) -> dict:
    import shutil

    from splat.train.config import preset_config
    from splat.train.runs import new_trainer

    run = out / name
    shutil.rmtree(run, ignore_errors=True)
    cfg = preset_config("auto", **{**budget, **overrides})
    cfg.eval_steps = [at_step]
    cfg.save_renders = False
    cfg.checkpoint_every = 10**9
    cfg.checkpoint_minutes = 0.0
    steal0, t0 = cpu_steal_seconds(), time.perf_counter()
    trainer = new_trainer(str(data), run, cfg)
    final = trainer.train()
    wall = time.perf_counter() - t0
    steal1 = cpu_steal_seconds()
    evals = evaluations(run_records(run))

    def scores(r: dict) -> dict:
        return {
            "step": r["step"],
            "train_seconds": r["train_seconds"],
            "val_psnr": r["eval_val"]["psnr"],
            "test_psnr": r["eval"]["psnr"],
            "val_ssim": r["eval_val"]["ssim"],
            "test_ssim": r["eval"]["ssim"],
            "num_gaussians": r.get("num_gaussians"),
        }

    at = next((scores(r) for r in evals if r["step"] == at_step), None)
    result = {
        "overrides": overrides,
        "commit": commit(),
        "date": header("train_dnerf", cfg.device)["date"],
        "model": trainer.cfg.model,
        "background": trainer.background_mode,
        "batch_size": trainer.cfg.batch_size,
        "settings": {
            k: getattr(trainer.cfg, k)
            for k in (
                "steps",
                "refine_stop",
                "max_train_seconds",
                "velocity_consistency",
                "init_time_scale",
                "sh_degree",
                "motion_bases",
                "motion_knots",
                "lr_motion",
                "lr_motion_final",
            )
        },
        "wall_seconds": round(wall, 1),
        "cpu_steal_seconds": None if steal0 is None else round(steal1 - steal0, 1),
        "at_step": at,
        "final": {**scores(final), "train_psnr": train_psnr(trainer)},
    }
    f = result["final"]
    print(
        f"{name:24s} step {f['step']:6,d} ({f['train_seconds']:.0f} s): val {f['val_psnr']:.2f}  "
        f"test {f['test_psnr']:.2f}  train {f['train_psnr']:.2f} dB, {f['num_gaussians']:,} G"
        + (f"; at step {at_step}: val {at['val_psnr']:.2f} test {at['test_psnr']:.2f}" if at else ""),
        flush=True,
    )
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    p.add_argument("--steps", type=int, default=2000, help="training steps of each variant")
    p.add_argument("--seconds", type=float, help="train by time instead (the CPU preset's way), at most 30k steps")
    p.add_argument("--as-cli", action="store_true", help="the budget `splat train` picks (no steps or seconds given)")
    p.add_argument("--at-step", type=int, default=1000, help="also score every variant at this step")
    p.add_argument("--out", default=str(HERE.parent / "outputs" / "bench" / "train_dnerf"))
    args = p.parse_args(argv)
    data = shared_data("dnerf_lego_100")
    if data is None:
        return 1
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    path = RESULTS / f"train_dnerf-{device}.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    variants = previous.get("variants", {})
    # the budget, and what the variants' keys say of it
    if args.as_cli:
        budget, suffix = {}, "@cli"
    elif args.seconds:
        budget, suffix = {"max_train_seconds": args.seconds}, f"@{args.seconds:g}s"
    else:  # by steps: densification stops half-way, as the CPU preset's time budget stops it (15k of its 30k)
        budget = {"max_train_seconds": 0.0, "steps": args.steps, "refine_stop": args.steps // 2}
        suffix = "" if args.steps == 2000 else f"@{args.steps}"
    for name in names:
        key = name + suffix
        variants[key] = {
            "budget": budget,
            **run_variant(name, VARIANTS[name], data, budget, args.at_step, Path(args.out)),
        }
        latest = json.loads(path.read_text()) if path.exists() else {}  # another sweep may have written meanwhile
        variants = {**latest.get("variants", {}), key: variants[key]}
        result = {
            **header("train_dnerf", device),
            "data": "dnerf_lego_100: 50 train / 11 val / 20 test frames at 100x100, RGB on black",
            "notes": latest.get("notes", ""),
            "published": PUBLISHED,
            "variants": variants,
        }
        write_result(path, result)  # after every variant: an interrupted sweep keeps what it measured
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
