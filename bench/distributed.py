#!/usr/bin/env python
"""Distributed training benchmark (gloo on the CPU): one process vs 2 ranks, in one run.

Both train the same procedural still life (Blender format, 160x120, random initialisation, no
densification so N stays fixed) on 2 images per step: one process with batch 2, or 2 ranks with
one image each (the same global batch). Per configuration it records steps/s, the Gaussian
memory of each rank (parameters + Adam moments, bytes of the tensors; and the process's peak
RSS), and the bytes the all-to-all moved per step, measured (`renderer.distributed.EXCHANGE_STATS`)
and from the formula

    forward bytes per step (all ranks) = (R - 1) * C * f * N * 4 * F,  F = 9 + D (= 12 for RGB)

with N Gaussians, C cameras per rank, R ranks, f the mean fraction of a shard that reaches a
destination rank's cameras (measured; f = 1 is the bound without culling); the backward moves the
same bytes of gradients.

    python bench/distributed.py [--gaussians 20000] [--steps 12]
Writes bench/results/distributed-cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

FEATURES = 3
ROW_FLOATS = 9 + FEATURES


def tensor_bytes(trainer) -> dict:
    params = sum(p.numel() * p.element_size() for p in trainer.params.values())
    adam = 0
    for opt in trainer.optimizers.values():
        for state in opt.state.values():
            adam += sum(v.numel() * v.element_size() for k, v in state.items() if k in ("exp_avg", "exp_avg_sq"))
    return {"params": params, "adam": adam, "total": params + adam}


def worker(out: Path, data: str, gaussians: int, steps: int, batch: int) -> None:
    from splat import distributed as D
    from splat.renderer.distributed import EXCHANGE_STATS, reset_exchange_stats
    from splat.train.config import TrainConfig
    from splat.train.runs import new_trainer

    if "RANK" in os.environ:
        D.init_from_env("cpu")
    rank, world = D.world()
    cfg = TrainConfig(
        steps=10_000,
        init_points=gaussians,
        refine_start=10**9,
        sh_degree=0,
        eval_steps=[],
        checkpoint_every=10**9,
        batch_size=batch,
        save_renders=False,
        log_every=10**9,
    )
    trainer = new_trainer(data, out / "run", cfg)
    for _ in range(3):  # warm-up: kernel loading, allocator
        trainer.train_step()
    reset_exchange_stats()
    D.barrier()
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    D.barrier()
    seconds = time.perf_counter() - t0
    record = {
        "rank": rank,
        "world_size": world,
        "cameras_per_rank": batch,
        "steps": steps,
        "seconds": seconds,
        "steps_per_second": steps / seconds,
        "gaussians_on_rank": trainer.num_gaussians,
        "gaussian_bytes": tensor_bytes(trainer),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "forward_bytes_per_step": EXCHANGE_STATS["forward_bytes"] / steps,
        "backward_bytes_per_step": EXCHANGE_STATS["backward_bytes"] / steps,
    }
    if world > 1:  # which Gaussians reach the other rank's cameras (one more render, after the clock)
        import torch

        with torch.no_grad():
            mine = trainer.data.train_indices[rank * batch : (rank + 1) * batch]
            record["sent_rows"] = trainer._render(mine, torch.ones(len(mine), 3), 0)[2]["sent_rows"]
    (out / f"rank_{rank}.json").write_text(json.dumps(record))
    if world > 1:
        D.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_config(data: str, world: int, batch: int, args, tmp: Path) -> list[dict]:
    out = tmp / f"world{world}"
    out.mkdir()
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        str(out),
        "--data",
        data,
        "--gaussians",
        str(args.gaussians),
        "--steps",
        str(args.steps),
        "--batch",
        str(batch),
    ]
    if world == 1:
        subprocess.run(cmd, check=True)
    else:
        env = {
            **os.environ,
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(free_port()),
            "WORLD_SIZE": str(world),
            "LOCAL_WORLD_SIZE": str(world),
        }
        procs = [subprocess.Popen(cmd, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(world)]
        assert [p.wait() for p in procs] == [0] * world
    return [json.loads((out / f"rank_{r}.json").read_text()) for r in range(world)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gaussians", type=int, default=20_000)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--worker")
    ap.add_argument("--data")
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args()
    if args.worker:
        return worker(Path(args.worker), args.data, args.gaussians, args.steps, args.batch)

    from common import RESULTS, header

    from splat.renderer.distributed import exchange_bytes_bound
    from splat.scenes import dome_cameras, still_life, write_blender_dataset

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        views, K = dome_cameras(32, 160, 120)
        write_blender_dataset(still_life(), tmp / "data", views, K, 160, 120, 4)
        single = run_config(str(tmp / "data"), 1, 2, args, tmp)[0]
        ranks = run_config(str(tmp / "data"), 2, 1, args, tmp)

    R, C, N = 2, 1, single["gaussians_on_rank"]
    n_local = [r["gaussians_on_rank"] for r in ranks]
    off = [r["sent_rows"][d] / n_local[r["rank"]] for r in ranks for d in range(R) if d != r["rank"]]
    f = sum(off) / len(off)
    measured_fwd = sum(r["forward_bytes_per_step"] for r in ranks)
    measured_bwd = sum(r["backward_bytes_per_step"] for r in ranks)
    bound = exchange_bytes_bound(N, C, R, FEATURES)
    result = {
        **header("distributed", "cpu"),
        "scene": "procedural still life, Blender format, 32 views at 160x120, random initialisation, SH degree 0",
        "gaussians": N,
        "images_per_step": 2,
        "single_process": single,
        "two_ranks": ranks,
        "memory_per_rank_vs_single": [r["gaussian_bytes"]["total"] / single["gaussian_bytes"]["total"] for r in ranks],
        "steps_per_second": {
            "single_batch2": single["steps_per_second"],
            "two_ranks_batch1": min(r["steps_per_second"] for r in ranks),
        },
        "speedup_2_ranks_vs_1": min(r["steps_per_second"] for r in ranks) / single["steps_per_second"],
        "exchange": {
            "row_bytes": 4 * ROW_FLOATS,
            "visible_fraction_f": f,
            "forward_bytes_per_step_measured": measured_fwd,
            "backward_bytes_per_step_measured": measured_bwd,
            "forward_bytes_per_step_formula": bound * f,
            "forward_bytes_per_step_bound_f1": bound,
            "formula": "(R - 1) * C * f * N * 4 * (9 + D), backward the same",
        },
        "notes": "2 ranks share the machine's cores with each other (and, here, with other users): the speed-up is "
        "bounded by the cores, not by the exchange",
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "distributed-cpu.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(
        json.dumps(
            {
                k: result[k]
                for k in ("memory_per_rank_vs_single", "steps_per_second", "speedup_2_ranks_vs_1", "exchange")
            },
            indent=1,
        )
    )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
