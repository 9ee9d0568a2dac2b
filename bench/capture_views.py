#!/usr/bin/env python
"""Where a real capture's test PSNR is lost: trains the CLI's defaults (plus any overrides) for a
time budget, then scores every image, training and held-out, whole and by horizontal quarter.
Test views that fail where their neighbouring training views fit well are a generalisation
problem; test views that fail where the training views fail too are a fitting problem.

    python bench/capture_views.py beer                                  # defaults, 10 minutes
    python bench/capture_views.py beer --set reset_every=1000 --label reset-1000
    python bench/capture_views.py beer --train-only 39-48 --max-seconds 180   # one stretch of the capture

Each run is appended to bench/results/capture_views_<scene>-<device>.json (with device, date,
steal and the overrides), so configurations are compared across runs of one session.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from common import SCENES, cpu_steal_seconds, header, results_dir, shared_data, write_result

HERE = Path(__file__).resolve().parent


def parse_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def split_of(data, index: int) -> str:
    """test, train, or unused (a training image left out by --train-only)."""
    return "test" if index in data.test_indices else "train" if index in data.train_indices else "unused"


def view_scores(trainer) -> list[dict]:
    """PSNR of every dataset image (the test background, full size), whole and per quarter."""
    from splat.train import losses

    out = []
    bg = trainer.eval_background
    with torch.no_grad():
        for index, frame in enumerate(trainer.data.frames):
            gt, mask = trainer.ground_truth(index, bg)
            image = trainer.render_eval(index, bg).clamp(0, 1)
            h = gt.shape[0]
            rows = [slice(q * h // 4, (q + 1) * h // 4) for q in range(4)]
            quarters = [losses.psnr(image[r], gt[r], min_mse=1e-10) for r in rows]  # the whole quarter, no mask
            out.append(
                {
                    "image": frame.name,
                    "split": split_of(trainer.data, index),
                    "psnr": round(float(losses.psnr(image, gt, mask)), 2),
                    "psnr_quarters": [round(q, 2) for q in quarters],
                }
            )
    return out


def summary(views: list[dict]) -> dict:
    """Means over the test views, over the training views next to them (one image either side),
    and over all training views."""
    names = [v["image"] for v in views]
    test = [i for i, v in enumerate(views) if v["split"] == "test"]
    beside = sorted({j for i in test for j in (i - 1, i + 1) if 0 <= j < len(views) and views[j]["split"] == "train"})
    train = [i for i, v in enumerate(views) if v["split"] == "train"]

    def mean(rows, key):
        values = [views[i]["psnr"] if key is None else views[i]["psnr_quarters"][key] for i in rows]
        return round(sum(values) / max(len(values), 1), 2)

    return {
        "test_psnr": mean(test, None),
        "test_top_quarter": mean(test, 0),
        "train_beside_test_psnr": mean(beside, None),
        "train_beside_test_top_quarter": mean(beside, 0),
        "train_psnr": mean(train, None),
        "worst_train_images": sorted((views[i]["psnr"], names[i]) for i in train)[:8],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scene", choices=sorted(SCENES))
    p.add_argument("--max-seconds", type=float, default=600.0)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a TrainConfig override")
    p.add_argument("--label", default="defaults")
    p.add_argument(
        "--train-only",
        metavar="A-B[,C-D]",
        help="train on the training images whose index lies in these ranges (are they consistent?)",
    )
    p.add_argument("--keep", action="store_true", help="keep the run folder (outputs/bench/capture_views_*)")
    args = p.parse_args(argv)
    data = shared_data(SCENES[args.scene])
    if data is None:
        return 1
    from splat.train.config import preset_config
    from splat.train.runs import new_trainer

    overrides = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    cfg = preset_config("auto", max_train_seconds=args.max_seconds, save_renders=False, **overrides)
    run_dir = HERE.parent / "outputs" / "bench" / f"capture_views_{args.scene}_{time.strftime('%H%M%S')}"
    trainer = new_trainer(str(data), run_dir, cfg)
    if args.train_only:
        ranges = [tuple(int(x) for x in part.split("-")) for part in args.train_only.split(",")]
        trainer.data.train_indices = [i for i in trainer.data.train_indices if any(a <= i <= b for a, b in ranges)]
    steal0, t0 = cpu_steal_seconds(), time.perf_counter()
    result = trainer.train()
    wall = time.perf_counter() - t0
    steal = None if steal0 is None else round(cpu_steal_seconds() - steal0, 1)
    views = view_scores(trainer)
    if not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    run = {
        **header("capture_views", cfg.device),
        "label": args.label,
        "overrides": overrides,
        "train_only": args.train_only,
        "train_images": len(trainer.data.train_indices),
        "max_seconds": args.max_seconds,
        "steps": trainer.step,
        "num_gaussians": trainer.num_gaussians,
        "wall_seconds": round(wall, 1),
        "cpu_steal_seconds": steal,
        "eval": result.get("eval"),
        "model_stats": trainer.model_stats(),
        "summary": summary(views),
        "views": views,
    }
    out = results_dir() / f"capture_views_{args.scene}-{cfg.device}.json"
    runs = json.loads(out.read_text())["runs"] if out.exists() else []
    write_result(out, {"benchmark": "capture_views", "scene": args.scene, "runs": [*runs, run]})
    print(json.dumps({k: run[k] for k in ("label", "overrides", "steps", "num_gaussians", "cpu_steal_seconds")}))
    print(json.dumps(run["summary"]))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
