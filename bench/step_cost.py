#!/usr/bin/env python
"""Step cost over a run, for captures initialised without points: early vs late training at the
same (full) resolution, (Gaussian, tile) pairs, and two CPU-side costs measured against their
previous implementation in the same run (OpenMP spin-waiting, Adam).

    python bench/step_cost.py                 # forward-facing LLFF fixture + lego_400 (if present)
    python bench/step_cost.py --seconds 120   # training time of the fixture (and of lego)
    python bench/step_cost.py --lego-seconds 0  # lego for the cpu preset's whole budget: "late"
                                                # is then the end of a default run (14 min)

The probe renders one training view at full resolution, forward + backward of the training loss
(no optimiser step, no densification), 3 times, at the start and then every `--probe-every`
steps; the training itself runs with the default (auto) preset. Writes
bench/results/step_cost-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DATASETS, RESULTS, header, write_result


def probe(trainer, repeats: int = 3) -> dict:
    """Median seconds of forward + backward of one full-resolution training view."""
    import torch

    from splat.train import losses
    from splat.train.trainer import sh_degree_at

    index = trainer.data.train_indices[0]
    times, pairs = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        gt, mask = trainer.ground_truth(index, trainer.eval_background)
        image, _, info = trainer.render(index, trainer.eval_background, sh_degree_at(trainer.step, trainer.cfg))
        loss = losses.photometric_loss(image, gt, mask, trainer.cfg.ssim_lambda)
        loss.backward()
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        pairs = int(info["isect_ids"].numel())
        for p in trainer.params.values():
            p.grad = None
    return {
        "step": trainer.step,
        "seconds": sorted(times)[len(times) // 2],
        "tile_pairs": pairs,
        "num_gaussians": trainer.num_gaussians,
    }


def run_scene(name: str, data: str, seconds: float, probe_every: int, device: str) -> dict:
    from splat.train.config import preset_config
    from splat.train.runs import new_trainer

    cfg = preset_config(
        "auto", device=device, max_train_seconds=seconds, eval_steps=[], save_renders=False, checkpoint_every=10**9
    )
    with tempfile.TemporaryDirectory() as tmp:
        trainer = new_trainer(data, Path(tmp) / "run", cfg)
        probes = [probe(trainer)]
        step_times = []
        while not trainer.out_of_time:
            t0 = time.perf_counter()
            out = trainer.train_step()
            dt = time.perf_counter() - t0
            trainer.train_seconds += dt
            step_times.append(
                {
                    "step": trainer.step,
                    "seconds": dt,
                    "tile_pairs": out["tile_pairs"],
                    "downscale": trainer.downscale_at(trainer.step - 1),
                }
            )
            if trainer.step % probe_every == 0:
                probes.append(probe(trainer))
        probes.append(probe(trainer))
        cam = trainer.data.camera(trainer.data.train_indices[0])
    early, late = probes[0], probes[-1]
    ratio = early["seconds"] / late["seconds"]
    print(
        f"{name}: {cam.width}x{cam.height}, preset {cfg.preset}: early {early['seconds'] * 1e3:.0f} ms "
        f"({early['num_gaussians']:,} G, {early['tile_pairs']:,} pairs) vs late {late['seconds'] * 1e3:.0f} ms "
        f"({late['num_gaussians']:,} G, {late['tile_pairs']:,} pairs) at step {late['step']}: ratio {ratio:.2f}"
    )
    return {
        "scene": name,
        "data": data,
        "resolution": [cam.width, cam.height],
        "preset": cfg.preset,
        "train_seconds": seconds,
        "early_over_late": ratio,
        "probes": probes,
        "steps": step_times[::10],
    }


ADAM_SNIPPET = """
import json, time, torch
torch.set_num_threads(1)
n = 130_000
shapes = [(n, 3), (n, 3), (n, 4), (n,), (n, 1, 3), (n, 15, 3)]
out = {}
for mode, kw in (("single_tensor", {"foreach": False}), ("fused", {"fused": True})):
    ps = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    opts = [torch.optim.Adam([p], lr=1e-3, eps=1e-15, **kw) for p in ps]
    for p in ps:
        p.grad = torch.randn_like(p)
    for o in opts:
        o.step()
    t0 = time.process_time()
    for _ in range(10):
        for o in opts:
            o.step()
    out[mode] = (time.process_time() - t0) / 10
print(json.dumps(out))
"""

OMP_SNIPPET = """
import sys, tempfile, time
from splat.train.config import preset_config
from splat.train.runs import new_trainer
cfg = preset_config("cpu", device="cpu", steps=1000, eval_steps=[], resolution_schedule=[])
tr = new_trainer(sys.argv[1], tempfile.mkdtemp(), cfg)
for _ in range(5):
    tr.train_step()
t0 = time.perf_counter()
for _ in range(20):
    tr.train_step()
print((time.perf_counter() - t0) / 20)
"""


def omp_wait_policy(data: str) -> dict:
    """Training step wall time with torch's OpenMP threads spin-waiting (ACTIVE, torch's default
    behaviour) vs passive waiting (splat's default), alone and beside one busy process."""
    import os

    def step_seconds(policy: str) -> float:
        env = {**os.environ, "OMP_WAIT_POLICY": policy}
        out = subprocess.run(
            [sys.executable, "-c", OMP_SNIPPET, data], env=env, capture_output=True, text=True, check=True
        )
        return float(out.stdout.strip().splitlines()[-1])

    result = {}
    for load in ("quiet", "one_busy_neighbour"):
        neighbour = None
        if load != "quiet":
            neighbour = subprocess.Popen(
                [sys.executable, "-c", "import torch\nx=torch.randn(800,800)\nwhile True: x@x"]
            )
        try:
            result[load] = {policy: step_seconds(policy) for policy in ("ACTIVE", "PASSIVE")}
        finally:
            if neighbour is not None:
                neighbour.kill()
        r = result[load]
        print(
            f"OpenMP wait policy, {load}: ACTIVE {r['ACTIVE'] * 1e3:.0f} ms/step, "
            f"PASSIVE {r['PASSIVE'] * 1e3:.0f} ms/step "
            f"(x{r['ACTIVE'] / r['PASSIVE']:.2f})"
        )
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=120.0, help="training time per scene")
    p.add_argument("--probe-every", type=int, default=250)
    p.add_argument("--device", default="auto")
    p.add_argument("--skip-lego", action="store_true")
    p.add_argument(
        "--lego-seconds",
        type=float,
        help="lego's training time (default: --seconds; 0: the default preset's whole budget)",
    )
    args = p.parse_args(argv)

    from splat.scenes import forward_facing_cameras, still_life, write_llff_dataset
    from splat.train.config import resolve_device

    device = resolve_device(args.device)
    result = header("step_cost", device)
    with tempfile.TemporaryDirectory() as tmp:
        fixture = Path(tmp) / "forward_fixture"
        views, K = forward_facing_cameras(24, 256, 192)
        write_llff_dataset(still_life(), fixture, views, K, 256, 192)
        result["scenes"] = [run_scene("forward_fixture_256x192", str(fixture), args.seconds, args.probe_every, device)]
        if not args.skip_lego and (DATASETS / "lego_400").is_dir():
            from splat.train.config import preset_config

            lego_seconds = args.seconds if args.lego_seconds is None else args.lego_seconds
            if lego_seconds <= 0:
                lego_seconds = preset_config("auto", device=device).max_train_seconds or args.seconds
            result["scenes"].append(
                run_scene("lego_400", str(DATASETS / "lego_400"), lego_seconds, args.probe_every, device)
            )
        adam = json.loads(
            subprocess.run([sys.executable, "-c", ADAM_SNIPPET], capture_output=True, text=True, check=True).stdout
        )
        print(
            f"Adam on 130k Gaussians (1 thread, CPU time): single-tensor {adam['single_tensor'] * 1e3:.1f} ms, "
            f"fused {adam['fused'] * 1e3:.1f} ms (x{adam['single_tensor'] / adam['fused']:.1f})"
        )
        result["adam_seconds_130k"] = adam
        if device == "cpu":
            result["omp_wait_policy_step_seconds"] = omp_wait_policy(str(fixture))
    result["notes"] = (
        "probe: forward+backward of one training view at full resolution (median of 3); "
        "early = before the first step, late = end of the time budget"
    )
    out = write_result(RESULTS / f"step_cost-{device}.json", result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
