#!/usr/bin/env python
"""Training benchmark: test PSNR / SSIM against training time on real data.

    python bench/train_lego.py                                  # lego_400, INRIA schedule, eval at 7k and 30k
    python bench/train_lego.py --preset fast --max-seconds 1200 # the 20-minute CPU run, PSNR-vs-time curve
    python bench/train_lego.py --scene beer --preset fast --downscale 2 --steps 7000
    python bench/train_lego.py --model field --max-seconds 1800 --samples-per-step 65536  # hash-grid NeRF

Reads ../shared/datasets/<scene> (or --data) (lego_400: Blender, white background; beer: COLMAP, black).
Intermediate evaluations use `--eval-subset` evenly spaced test images (all at the end) and never
land on an opacity-reset step. Writes bench/results/train_<scene>-<preset>-<device>.json (fields:
train_<scene>-field-<device>.json) with the curve, final metrics, wall and training time, peak
memory, model size (Gaussians, or occupancy and samples per ray), device and versions.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from common import DATASETS, header, results_dir, write_result

HERE = Path(__file__).resolve().parent
SCENES = {"lego": "lego_400", "beer": "beer"}


def eval_schedule(every: int, steps: int, reset_every: int, extra: list[int]) -> list[int]:
    points = set(extra)
    for s in range(every, steps + 1, every):
        points.add(s + 100 if s % reset_every == 0 else s)  # right after a reset the model is blank
    return sorted(p for p in points if p <= steps)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scene", choices=sorted(SCENES), default="lego")
    p.add_argument("--preset", choices=["inria", "fast"], default="inria")
    p.add_argument("--steps", type=int, default=30_000)
    p.add_argument("--max-seconds", type=float, default=0.0, help="stop after this much training time")
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--eval-subset", type=int, default=25)
    p.add_argument("--downscale", type=int, default=1)
    p.add_argument("--strategy", choices=["default", "mcmc"], default="default")
    p.add_argument("--model", choices=["gaussians", "field"], default="gaussians")
    p.add_argument("--samples-per-step", type=int, default=1 << 18, help="field: target samples per step")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    p.add_argument(
        "--data", default=None, help="dataset folder (default: ../shared/datasets/<scene>, or $SPLAT_DATASETS/<scene>)"
    )
    p.add_argument("--out", default=None, help="run folder (default: a temporary folder under outputs/bench)")
    args = p.parse_args(argv)

    import torch

    from splat.train.config import preset_config
    from splat.train.runs import new_trainer

    data = Path(args.data) if args.data else DATASETS / SCENES[args.scene]
    if not data.exists():
        print(f"{data} is absent: nothing to benchmark (see ../shared/datasets/README.md)", file=sys.stderr)
        return 1
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    field = {"model": "field", "field_samples": args.samples_per_step} if args.model == "field" else {}
    cfg = preset_config(
        args.preset,
        steps=args.steps,
        max_train_seconds=args.max_seconds,
        device=device,
        downscale=args.downscale,
        strategy=args.strategy,
        eval_subset=args.eval_subset,
        save_renders=False,
        log_every=100,
        checkpoint_every=10**9,
        **field,
    )
    cfg.eval_steps = eval_schedule(args.eval_every, args.steps, cfg.reset_every, [7000, 30000])
    if field:
        tag = f"{args.scene}-field"
    else:
        tag = f"{args.scene}-{args.preset}" + (f"-{args.strategy}" if args.strategy != "default" else "")
    run_dir = Path(args.out or f"outputs/bench/train_{tag}-{time.strftime('%Y%m%d-%H%M%S')}")
    t0 = time.perf_counter()
    trainer = new_trainer(str(data), run_dir, cfg)
    print(f"{trainer.data.summary()}; {trainer.model_text()} at the start; {args.model}; -> {run_dir}")

    def progress(tr, out):
        if tr.step % 500 == 0:
            print(
                f"step {tr.step}: train {tr.train_seconds:.0f} s, loss {out['loss']:.4f}, {tr.model_text()}", flush=True
            )

    final = trainer.train(progress)
    wall = time.perf_counter() - t0
    curve = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    size_keys = list(trainer.model_stats())
    curve = [
        {
            "step": r["step"],
            "train_seconds": r["train_seconds"],
            "psnr": r["eval"]["psnr"],
            "ssim": r["eval"]["ssim"],
            "num_images": r["eval"]["num_images"],
            **{k: r[k] for k in size_keys},
        }
        for r in curve
        if "eval" in r
    ]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device == "cuda":
        gpu_peak_mb = torch.cuda.max_memory_allocated() / 2**20

    result = {
        **header("train", device),
        "scene": args.scene,
        "data": str(data),
        "model": args.model,
        "preset": args.preset,
        "strategy": args.strategy,
        "config": cfg.to_json(),
        "final": {
            "step": final["step"],
            "train_seconds": final["train_seconds"],
            "psnr": final["eval"]["psnr"],
            "ssim": final["eval"]["ssim"],
            "lpips": final["eval"]["lpips"],
            "num_images": final["eval"]["num_images"],
            **{k: final[k] for k in size_keys},
        },
        "wall_seconds": wall,
        "peak_rss_mb": peak_mb,
        "curve": curve,
        "notes": "PSNR/SSIM/LPIPS (AlexNet) on the test split (lego: white background); intermediate points on "
        "eval_subset images",
    }
    if device == "cuda":
        result["peak_gpu_mb"] = gpu_peak_mb
    out = write_result(results_dir() / f"train_{tag}-{device}.json", result)
    print(f"\n{'step':>6} {'train s':>8} {'PSNR':>7} {'SSIM':>7} {'images':>6}  " + "  ".join(size_keys))
    for r in curve:
        print(
            f"{r['step']:6d} {r['train_seconds']:8.0f} {r['psnr']:7.2f} {r['ssim']:7.4f} {r['num_images']:6d}  "
            + "  ".join(f"{r[k]:,}" for k in size_keys)
        )
    print(
        f"final: {result['final']['psnr']:.2f} dB PSNR, SSIM {result['final']['ssim']:.4f} after "
        f"{result['final']['train_seconds']:.0f} s of training ({wall:.0f} s wall), peak RSS {peak_mb:.0f} MB -> {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
