"""Worker programs for tests/test_distributed.py, run as ranks of a torch.distributed group
(env:// from the environment, gloo): `python tests/dist_cases.py CASE OUT_DIR SEED`."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import random_cameras, random_gaussians  # noqa: E402

WIDTH, HEIGHT, CAMERAS_PER_RANK, N, SH_DEGREE = 40, 30, 2, 400, 1


def problem(seed: int, world_size: int):
    """Fixed Gaussians, R x C cameras, backgrounds and loss weights, the same on every rank."""
    gen = torch.Generator().manual_seed(seed)
    means, quats, scales, opacities = random_gaussians(gen, N)
    colors = 0.5 * torch.randn(N, (SH_DEGREE + 1) ** 2, 3, generator=gen, dtype=torch.float64)
    viewmats, Ks = random_cameras(gen, CAMERAS_PER_RANK * world_size, WIDTH, HEIGHT)
    backgrounds = torch.rand(CAMERAS_PER_RANK * world_size, 3, generator=gen, dtype=torch.float64)
    weights = torch.randn(CAMERAS_PER_RANK * world_size, HEIGHT, WIDTH, 3, generator=gen, dtype=torch.float64)
    gaussians = {"means": means, "quats": quats, "scales": scales, "opacities": opacities, "colors": colors}
    return (
        {k: v.float() for k, v in gaussians.items()},
        viewmats.float(),
        Ks.float(),
        backgrounds.float(),
        weights.float(),
    )


def grad_case(out: Path, seed: int) -> None:
    from splat.renderer.distributed import rasterize_distributed

    rank, world = dist.get_rank(), dist.get_world_size()
    gaussians, viewmats, Ks, backgrounds, weights = problem(seed, world)
    shard = {k: torch.tensor_split(v, world)[rank].clone().requires_grad_(True) for k, v in gaussians.items()}
    mine = slice(rank * CAMERAS_PER_RANK, (rank + 1) * CAMERAS_PER_RANK)
    colors, alphas, meta = rasterize_distributed(
        shard["means"],
        shard["quats"],
        shard["scales"],
        shard["opacities"],
        shard["colors"],
        viewmats[mine],
        Ks[mine],
        WIDTH,
        HEIGHT,
        sh_degree=SH_DEGREE,
        backgrounds=backgrounds[mine],
    )
    meta["shard_means2d"].retain_grad()
    (colors * weights[mine]).sum().backward()
    torch.save(
        {
            "images": colors.detach(),
            "alphas": alphas.detach(),
            "grads": {k: v.grad for k, v in shard.items()},
            "means2d_grad": meta["shard_means2d"].grad,
            "radii": meta["shard_radii"],
            "sent_rows": meta["sent_rows"],
        },
        out / f"rank_{rank}.pt",
    )


def train_case(out: Path, seed: int) -> None:
    """Train (or, with a checkpoint in OUT, resume) the run in OUT: data and config in OUT/job.json."""
    import json

    from splat.train.config import TrainConfig
    from splat.train.runs import new_trainer, restore_trainer

    job = json.loads((out / "job.json").read_text())
    run_dir = out / "run"
    if (run_dir / "checkpoints").exists():
        trainer = restore_trainer(run_dir, {"steps": job["config"]["steps"]})
    else:
        trainer = new_trainer(job["data"], run_dir, TrainConfig(**job["config"], seed=seed))
    trainer.train()


if __name__ == "__main__":
    case, out, seed = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    from splat import distributed

    distributed.init_from_env("cpu")
    try:
        {"grad": grad_case, "train": train_case}[case](out, seed)
    finally:
        distributed.shutdown()
