"""Fuzzing every reader on mutated files: splat files (.ply, .splat, .spz v3 and v4, compressed
PLY), checkpoints, transforms.json (Blender, nerfstudio), COLMAP models (bin and txt),
poses_bounds.npy, images and camera paths. Each case is a copy of a seed (a file, or a dataset
folder) with one file mutated, read by the reader a command uses (tests/fuzz_worker.py `read`),
and must end in a result or one of splat's own errors, never another exception, within
`bound(size)` bytes of memory above what the worker held before (64 x the mutated file + 200 MB).

Shared by tests/test_fuzz.py (small synthetic seeds, in CI) and bench/fuzz_readers.py (real
files from ../shared/datasets, many more cases; the numbers go to bench/results/).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from memory_probe import bound
from test_fuzz import JSON_VALUES, mutate_bytes, mutate_json

# a seed's reader (fuzz_worker.read) by what the seed is
READERS = {
    "ply": "splat",
    "splat": "splat",
    "spz-v3": "splat",
    "spz-v4": "splat",
    "compressed-ply": "splat",
    "checkpoint": "checkpoint",
    "blender": "dataset",
    "nerfstudio": "dataset",
    "colmap-bin": "dataset",
    "colmap-txt": "dataset",
    "llff": "dataset",
    "png": "image",
    "jpeg": "image",
    "camera_path": "camera_path",
}


@dataclass
class Seed:
    kind: str  # a key of READERS
    path: Path  # what the reader is given: a file, or a dataset folder
    targets: list[str]  # the files (relative to `path`'s folder for a dataset) a mutation may touch


def splat_seeds(root: Path, splats: dict) -> list[Seed]:
    """The four splat formats (SPZ as version 3 and 4) of one set of Gaussians."""
    from splat.formats import write_splats

    root.mkdir(parents=True, exist_ok=True)
    out = []
    for kind, name, options in (
        ("ply", "s.ply", {}),
        ("splat", "s.splat", {}),
        ("spz-v3", "s.spz", {}),
        ("spz-v4", "s4.spz", {"version": 4}),
        ("compressed-ply", "s.compressed.ply", {}),
    ):
        path = write_splats(root / name, splats, **options)
        out.append(Seed(kind, path, [path.name]))
    return out


def dataset_seed(kind: str, root: Path, images: int = 1) -> Seed:
    """A dataset folder; its description files and the first `images` images may be mutated."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    described = [p for p in files if p.suffix in (".json", ".bin", ".txt", ".npy")]
    pictures = [p for p in files if p.suffix.lower() in (".png", ".jpg", ".jpeg")][:images]
    return Seed(kind, root, [str(p.relative_to(root)) for p in described + pictures])


def mutate_checkpoint(path: Path, rng: random.Random) -> str:
    """A checkpoint's bytes, or (half the time) one entry of its state swapped for a value of
    another kind, or deleted, then saved again."""
    import torch

    if rng.random() < 0.5:
        return mutate_bytes(path, rng)
    state = torch.load(path, weights_only=True)
    nodes = []

    def walk(value, depth=0):
        if isinstance(value, dict) and depth < 4:
            for k, v in value.items():
                nodes.append((value, k))
                walk(v, depth + 1)

    walk(state)
    container, key = rng.choice(nodes)
    replacements = [*JSON_VALUES[:14], torch.zeros(0), torch.zeros(3, 2), torch.full((2,), math.nan), "x" * 10]
    if rng.random() < 0.2:
        del container[key]
        what = f"deleted {key!r}"
    else:
        container[key] = rng.choice(replacements)
        what = f"{key!r} = {str(container[key])[:30]}"
    torch.save(state, path)
    return f"{path.name}: {what}"


def make_case(seed: Seed, case_dir: Path, rng: random.Random) -> tuple[dict, str, int]:
    """(worker request, description, bytes of the mutated file) of one mutated copy of `seed`."""
    if seed.path.is_dir():  # the folder's files as hard links to the seed's (cheap), but the victim's
        target_root = case_dir / seed.path.name
        shutil.copytree(seed.path, target_root, copy_function=os.link)
        given = target_root
    else:
        case_dir.mkdir(parents=True)
        target_root = case_dir
        given = case_dir / seed.path.name
        shutil.copy(seed.path, given)
    victim = target_root / rng.choice(seed.targets)
    data = victim.read_bytes()
    victim.unlink()  # a file of its own: mutating a hard link would change the seed
    victim.write_bytes(data)
    if seed.kind == "checkpoint":
        what = mutate_checkpoint(victim, rng)
    elif victim.suffix == ".json" and rng.random() < 0.7:
        what = mutate_json(victim, rng)
    else:
        what = mutate_bytes(victim, rng)
    size = victim.stat().st_size if victim.exists() else 0
    return {"read": READERS[seed.kind], "path": str(given)}, f"{seed.kind}: {what}", size


def verdict(result: dict, size: int) -> str | None:
    """None when the case ended as it should (read, or refused by one of splat's errors, within
    the memory bound), else what went wrong."""
    if result["rc"] not in (0, 2):
        return f"{result['rc']}: {result['err'][-1500:]}"
    if result["peak_delta_bytes"] > bound(size):
        return f"peak {result['peak_delta_bytes'] / 2**20:.0f} MiB for a {size}-byte file"
    return None


def summary(results: list[dict], sizes: dict) -> dict:
    """Cases run, how they ended, and peak memory per input byte (above the 200 MB allowance)."""
    per_byte = [max(r["peak_delta_bytes"] - (200 << 20), 0) / max(sizes[r["id"]], 1) for r in results]
    peaks = sorted(r["peak_delta_bytes"] for r in results)
    return {
        "cases": len(results),
        "read": sum(r["rc"] == 0 for r in results),
        "clean_errors": sum(r["rc"] == 2 for r in results),
        "tracebacks": sum(r["rc"] not in (0, 2) for r in results),
        "over_memory_bound": sum(r["peak_delta_bytes"] > bound(sizes[r["id"]]) for r in results),
        "peak_mib_max": round(peaks[-1] / 2**20, 1) if peaks else 0,
        "peak_mib_p99": round(peaks[int(0.99 * (len(peaks) - 1))] / 2**20, 1) if peaks else 0,
        "peak_bytes_per_input_byte_beyond_200mb_max": round(max(per_byte, default=0.0), 2),
        "bound": "64 x the mutated file's size + 200 MB above the worker's resident size before the case",
    }


def synthetic_seeds(root: Path) -> list[Seed]:
    """Small seeds of every kind, made here (tests/scene_fixtures.py and a two-step training run)."""
    import imageio.v3 as iio
    import numpy as np
    import torch
    from scene_fixtures import ring_cameras, write_blender, write_colmap, write_llff, write_nerfstudio
    from test_fuzz import fuzz_splats

    from splat.train.config import TrainConfig
    from splat.train.runs import new_trainer

    seeds = splat_seeds(root / "splats", {**fuzz_splats(), "shN": torch.full((64, 3, 3), 0.1)})
    for kind, write in (
        ("blender", lambda d: write_blender(d, n_train=3, n_test=1)),
        ("nerfstudio", lambda d: write_nerfstudio(d, n=3)),
        ("colmap-bin", lambda d: write_colmap(d, n=3, models=("PINHOLE", "SIMPLE_RADIAL"), n_points=40)),
        ("colmap-txt", lambda d: write_colmap(d, n=3, models=("OPENCV",), binary=False, n_points=40)),
        ("llff", lambda d: write_llff(d, n=4)),
    ):
        write(root / kind)
        seeds.append(dataset_seed(kind, root / kind))
    blender = root / "blender"
    png = next((blender / "train").glob("*.png"))
    seeds.append(Seed("png", png, [png.name]))
    iio.imwrite(root / "photo.jpg", iio.imread(png)[..., :3], quality=90)
    seeds.append(Seed("jpeg", root / "photo.jpg", ["photo.jpg"]))
    views, _ = ring_cameras(3)
    path = {"render_width": 64, "render_height": 48, "camera_path": []}
    for view in views:
        c2w = np.linalg.inv(view) @ np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV -> OpenGL axes
        path["camera_path"].append({"camera_to_world": c2w.flatten().tolist(), "fov": 50.0})
    (root / "camera_path.json").write_text(json.dumps(path))
    seeds.append(Seed("camera_path", root / "camera_path.json", ["camera_path.json"]))
    run = root / "run"
    config = TrainConfig(steps=2, eval_steps=[], init_points=100, sh_degree=1, save_renders=False)
    new_trainer(str(blender), run, config).train()
    ckpt = sorted((run / "checkpoints").glob("step_*.pt"))[-1]
    seeds.append(Seed("checkpoint", ckpt, [ckpt.name]))
    return seeds


def warm_up_request(seeds: list[Seed]) -> dict:
    """Read every seed unmutated (each must read cleanly; the modules are loaded before any case)."""
    return {"read": "all", "seeds": [[READERS[s.kind], str(s.path)] for s in seeds]}
