#!/usr/bin/env python
"""Format round trips on trained scenes: each run's Gaussians are exported in every format,
re-imported with splat.load, and rendered from the dataset's test cameras; the score is the PSNR
of that render against the render of the original Gaussians (not against the photos), with file
sizes relative to the INRIA PLY.

    python bench/formats.py RUN [RUN ...] [--cameras 20] [--sh-std 0.05]

Targets (issue 13): .splat >= 30 dB (DC colour only), SPZ and compressed PLY with SH >= 40 dB;
SPZ <= 1/8 and compressed PLY <= 1/3 of the PLY's size. Short CPU runs have barely trained their
higher SH bands, so each run is also measured with its higher bands replaced by Gaussian noise of
--sh-std (a "synthetic SH" variant, marked as such) to exercise the SH quantisation.
Also measured: SPZ version 4 (ZSTD) and SPZ with the reference's SH bits (5 / 4; splat's default
is 5 / 5). Writes bench/results/formats-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import RESULTS, evaluations, header, run_records, write_result  # noqa: E402

FORMATS = ("ply", "splat", "spz", "compressed-ply")
VARIANTS = {"spz-v4": ("spz", {"version": 4}), "spz-reference-bits": ("spz", {"sh1_bits": 5, "sh_rest_bits": 4})}


def test_cameras(run: Path, scene, limit: int):
    """The run's held-out cameras (evenly thinned to `limit`), in the scene's frame."""
    from splat.run_folder import run_dataset

    info = json.loads((run / "config.json").read_text())
    data = run_dataset(info)
    ids = data.test_indices
    ids = [ids[round(k * (len(ids) - 1) / max(limit - 1, 1))] for k in range(min(limit, len(ids)))]
    return [scene.cameras[i] for i in ids]


def render_all(scene, cams):
    import torch

    return torch.stack([scene.render(c, background=(1.0, 1.0, 1.0))["rgb"] for c in cams])


def psnr(a, b) -> float:
    """Mean over images of the per-image PSNR (images in [0, 1]; identical images give 120 dB)."""
    from splat.train.losses import psnr as image_psnr

    return sum(image_psnr(x, y, min_mse=1e-12) for x, y in zip(a, b)) / len(a)


def measure(name: str, scene, cams, workdir: Path) -> dict:
    import splat
    from splat.formats import SUFFIXES, write_splats

    ref = render_all(scene, cams)
    out = {"num_gaussians": scene.num_gaussians, "sh_degree": scene.sh_degree, "formats": {}}
    for key in (*FORMATS, *VARIANTS):
        fmt, options = VARIANTS.get(key, (key, {}))
        path = workdir / f"{name}-{key}{SUFFIXES[fmt]}"
        t0 = time.perf_counter()
        write_splats(path, scene.splats, fmt, **options)
        t1 = time.perf_counter()
        back = splat.load(path)
        t2 = time.perf_counter()
        score = psnr(render_all(back, cams), ref)
        out["formats"][key] = {
            "bytes": path.stat().st_size,
            "bytes_per_gaussian": path.stat().st_size / scene.num_gaussians,
            "psnr_vs_original_db": round(score, 2) if math.isfinite(score) else None,
            "write_s": round(t1 - t0, 3),
            "read_s": round(t2 - t1, 3),
        }
        print(f"  {name:28s} {key:18s} {path.stat().st_size / 2**20:8.2f} MiB  {score:6.2f} dB", flush=True)
    ply = out["formats"]["ply"]["bytes"]
    for entry in out["formats"].values():
        entry["size_vs_ply"] = round(entry["bytes"] / ply, 4)
    return out


def main() -> int:
    import torch

    import splat

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="trained run folders (3D Gaussians)")
    p.add_argument("--cameras", type=int, default=20, help="test cameras per scene (evenly spaced)")
    p.add_argument("--sh-std", type=float, default=0.05, help="std of the synthetic higher SH bands")
    p.add_argument("--out", default=str(RESULTS / "formats-cpu.json"))
    args = p.parse_args()
    result = {
        **header("formats", "cpu"),
        "cameras_per_scene": args.cameras,
        "synthetic_sh_std": args.sh_std,
        "scenes": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for run in map(Path, args.runs):
            scene = splat.load(run)
            cams = test_cameras(run, scene, args.cameras)
            metrics = run_records(run)
            evals = evaluations(metrics)
            trained = {
                "steps": max(m.get("step", 0) for m in metrics),
                "test_psnr": evals[-1]["eval"]["psnr"] if evals else None,
                "sh_rest_abs_mean": float(scene.splats["shN"].abs().mean()) if scene.sh_degree else 0.0,
            }
            print(f"{run}: {scene.summary}, SH degree {scene.sh_degree}, {len(cams)} test cameras, {trained}")
            entry = {"run": str(run), "training": trained, "as_trained": measure(run.name, scene, cams, Path(tmp))}
            g = torch.Generator().manual_seed(0)
            s = dict(scene.splats)
            s["shN"] = args.sh_std * torch.randn(scene.num_gaussians, 15, 3, generator=g)
            entry["synthetic_sh"] = measure(f"{run.name}-synthetic-sh", splat.GaussianScene(s), cams, Path(tmp))
            result["scenes"][run.name] = entry
    print(f"wrote {write_result(Path(args.out), result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
