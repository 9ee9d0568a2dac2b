"""Fuzzing every reader on mutated real files, with a memory bound per case (tests/fuzz_files.py
says what a case is and what it must do; tests/test_fuzz.py runs a small synthetic version in CI).

Seeds, from ../shared/datasets (copied into a temporary folder, never into the repository):
- lego_400 (Blender): transforms_train/test.json cut to their first 8 / 2 frames, with those images
- beer (COLMAP): sparse/0 as it is (bin), the same model written as text, and its 71 JPEGs;
  poses_bounds.npy (LLFF) made from beer's cameras and bounds of its points, with its images
- splat files (.ply, .splat, .spz v3 and v4, compressed PLY) of 20,000 Gaussians placed at the
  first points of garden_points (Mip-NeRF 360 garden), coloured by them, SH degree 3
- a checkpoint of a 30-step lego run; a lego PNG (RGBA); a beer JPEG; a camera_path.json of
  beer's cameras

    python bench/fuzz_readers.py [--cases 1400] [--seed 15]

Writes bench/results/fuzz_readers-cpu.json: cases run, how they ended (read, clean one-line
errors, tracebacks), peak memory per case and per input byte, per seed kind, and every case that
misbehaved (none, when the readers are right).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from common import header, results_dir, shared_data, write_result  # noqa: E402


def blender_seed(lego: Path, root: Path, n_train: int = 8, n_test: int = 2) -> Path:
    for split, n in (("train", n_train), ("test", n_test)):
        meta = json.loads((lego / f"transforms_{split}.json").read_text())
        meta["frames"] = meta["frames"][:n]
        for frame in meta["frames"]:
            src = (lego / frame["file_path"]).with_suffix(".png")
            dst = root / src.relative_to(lego)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
        (root / f"transforms_{split}.json").write_text(json.dumps(meta, indent=1))
    return root


def colmap_text(model: Path, out: Path) -> None:
    """COLMAP's binary model written as its text format (cameras, images with their 2D points, points)."""
    from splat.datasets.colmap import MODELS, _Reader

    out.mkdir(parents=True, exist_ok=True)
    tables = {"cameras": [], "images": [], "points3D": []}
    r = _Reader(model / "cameras.bin")
    for _ in range(r.read("Q")[0]):
        cam_id, model_id, w, h = r.read("iiQQ")
        name, count = MODELS[model_id]
        tables["cameras"].append((cam_id, name, w, h, *r.read("d" * count)))
    r = _Reader(model / "images.bin")
    for _ in range(r.read("Q")[0]):
        values, name = r.read("idddddddi"), r.string()
        tables["images"] += [(*values, name), r.read("ddq" * r.read("Q")[0])]
    r = _Reader(model / "points3D.bin")
    for _ in range(r.read("Q")[0]):
        values = r.read("QdddBBBd")
        tables["points3D"].append((*values, *r.read("ii" * r.read("Q")[0])))
    for stem, rows in tables.items():
        (out / f"{stem}.txt").write_text("".join(" ".join(map(str, row)) + "\n" for row in rows))


def llff_from_colmap(beer: Path, root: Path) -> None:
    """poses_bounds.npy (N x 17: [R | t | (h, w, f)] with LLFF's (down, right, back) columns, then
    near and far) of beer's cameras, in the order of its sorted image names."""
    import numpy as np

    from splat.datasets import load_dataset

    data = load_dataset(beer, downscale=1, repair_poses=False)
    rows = []
    for frame in sorted(data.frames, key=lambda f: f.name):
        cam = data.normalization.camera_to_original(frame.camera)
        c2w = cam.c2w @ np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV -> OpenGL axes
        m = np.concatenate(
            [-c2w[:3, 1:2], c2w[:3, 0:1], c2w[:3, 2:3], c2w[:3, 3:4], [[cam.height], [cam.width], [cam.fx]]], 1
        )
        rows.append(np.concatenate([m.ravel(), [0.5, 20.0]]))
    np.save(root / "poses_bounds.npy", np.stack(rows))
    shutil.copytree(beer / "images", root / "images")


def nerfstudio_from_colmap(beer: Path, root: Path) -> None:
    """transforms.json (nerfstudio, OPENCV lens) of beer's cameras, over its images."""
    import numpy as np

    from splat.datasets import load_dataset

    data = load_dataset(beer, downscale=1, repair_poses=False)
    frames = []
    for frame in data.frames:
        cam = data.normalization.camera_to_original(frame.camera)
        k1 = cam.distortion[0] if cam.distortion else 0.0
        frames.append(
            {
                "file_path": f"images/{Path(frame.name).name}",
                "transform_matrix": (cam.c2w @ np.diag([1.0, -1.0, -1.0, 1.0])).tolist(),
                **dict(fl_x=cam.fx, fl_y=cam.fy, cx=cam.cx, cy=cam.cy, w=cam.width, h=cam.height),
                **dict(camera_model="OPENCV", k1=k1, k2=0.0, p1=0.0, p2=0.0),
            }
        )
    root.mkdir(parents=True)
    (root / "transforms.json").write_text(json.dumps({"frames": frames}, indent=1))
    (root / "images").symlink_to(beer / "images")


def garden_splats(npz: Path, n: int = 20000) -> dict:
    import numpy as np
    import torch

    from splat.renderer.constants import SH_C0

    points = np.load(npz)
    means = torch.from_numpy(points["means3d"][:n].astype(np.float32))
    rgb = torch.from_numpy(points["colors"][:n].astype(np.float32) / 255.0)
    spread = float((means.max(0).values - means.min(0).values).norm()) / n ** (1 / 3)
    return {
        "means": means,
        "scales": torch.full((n, 3), float(np.log(spread))),
        "quats": torch.nn.functional.normalize(torch.randn(n, 4, generator=torch.Generator().manual_seed(0)), dim=-1),
        "opacities": torch.full((n,), 1.0),
        "sh0": ((rgb - 0.5) / SH_C0)[:, None, :],
        "shN": torch.randn(n, 15, 3, generator=torch.Generator().manual_seed(1)) * 0.05,
    }


def real_seeds(root: Path) -> list:
    import imageio.v3 as iio
    import numpy as np
    from fuzz_files import Seed, dataset_seed, splat_seeds

    from splat.datasets import load_dataset
    from splat.train.config import TrainConfig
    from splat.train.runs import new_trainer

    lego, beer, garden = shared_data("lego_400"), shared_data("beer"), shared_data("garden_points")
    if not (lego and beer and garden):
        raise SystemExit(1)
    seeds = splat_seeds(root / "splats", garden_splats(garden / "test_garden.npz"))
    blender = blender_seed(lego, root / "lego")
    seeds.append(dataset_seed("blender", blender))
    shutil.copytree(beer, root / "beer")
    seeds.append(dataset_seed("colmap-bin", root / "beer"))
    (root / "beer_txt").mkdir()
    colmap_text(beer / "sparse" / "0", root / "beer_txt" / "sparse" / "0")
    (root / "beer_txt" / "images").symlink_to(root / "beer" / "images")
    seeds.append(dataset_seed("colmap-txt", root / "beer_txt", images=0))
    nerfstudio_from_colmap(root / "beer", root / "beer_ns")
    seeds.append(dataset_seed("nerfstudio", root / "beer_ns", images=0))
    (root / "beer_llff").mkdir()
    llff_from_colmap(beer, root / "beer_llff")
    seeds.append(dataset_seed("llff", root / "beer_llff"))
    png = next((blender / "train").glob("*.png"))
    seeds.append(Seed("png", png, [png.name]))
    jpeg = beer / "images" / "0000.jpg"
    shutil.copy(jpeg, root / "photo.jpg")
    seeds.append(Seed("jpeg", root / "photo.jpg", ["photo.jpg"]))
    data = load_dataset(beer, downscale=1, repair_poses=False)
    path = {"render_width": 360, "render_height": 640, "camera_path": []}
    for frame in data.frames:
        c2w = data.normalization.camera_to_original(frame.camera).c2w @ np.diag([1.0, -1.0, -1.0, 1.0])
        path["camera_path"].append({"camera_to_world": c2w.flatten().tolist(), "fov": 60.0})
    (root / "camera_path.json").write_text(json.dumps(path))
    seeds.append(Seed("camera_path", root / "camera_path.json", ["camera_path.json"]))
    config = TrainConfig(steps=30, eval_steps=[], init_points=5000, sh_degree=3, save_renders=False)
    new_trainer(str(blender), root / "run", config).train()
    ckpt = sorted((root / "run" / "checkpoints").glob("step_*.pt"))[-1]
    seeds.append(Seed("checkpoint", ckpt, [ckpt.name]))
    assert iio.improps(png).shape  # the seeds are real, readable files
    return seeds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1400)
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()

    from fuzz_files import READERS, make_case, summary, verdict, warm_up_request
    from test_fuzz import run_all

    def fail(message):
        raise RuntimeError(message)

    with tempfile.TemporaryDirectory(prefix="splat-fuzz-") as tmp:
        root = Path(tmp)
        t0 = time.monotonic()
        seeds = real_seeds(root / "seeds")
        setup_seconds = time.monotonic() - t0
        rng = random.Random(args.seed)
        requests, described, sizes, kinds = [], {}, {}, {}
        for k in range(args.cases):
            seed = seeds[k % len(seeds)]
            request, what, sizes[k] = make_case(seed, root / "cases" / f"{k:05d}", rng)
            described[k], kinds[k] = what, seed.kind
            requests.append((k, request))
        t1 = time.monotonic()
        results = run_all(requests, lambda n: warm_up_request(seeds), fail=fail)
        seconds = time.monotonic() - t1
    failures = [{"case": described[r["id"]], "what": v} for r in results if (v := verdict(r, sizes[r["id"]]))]
    by_kind = {kind: summary([r for r in results if kinds[r["id"]] == kind], sizes) for kind in READERS}
    by_kind = {kind: s for kind, s in by_kind.items() if s["cases"]}
    for s in by_kind.values():
        s.pop("bound")
    result = {
        **header("fuzz_readers", "cpu"),
        "seed": args.seed,
        "seeds": {s.kind: str(s.path.relative_to(root / "seeds")) for s in seeds},
        "setup_seconds": round(setup_seconds, 1),
        "seconds": round(seconds, 1),
        "total": summary(results, sizes),
        "by_kind": by_kind,
        "failures": failures,
    }
    out = write_result(results_dir() / "fuzz_readers-cpu.json", result)
    print(json.dumps(result["total"], indent=1))
    print(f"{len(failures)} failures; wrote {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
