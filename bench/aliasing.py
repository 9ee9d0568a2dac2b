#!/usr/bin/env python
"""How aliased frames cap PSNR, and what the rasterizer's low-pass filter (eps2d) costs on them.

    python bench/aliasing.py                      # frame statistics and ceilings (seconds)
    python bench/aliasing.py --train-steps 3000   # also trains static lego at 100 px (minutes)

Frames downscaled by point sampling (keeping one pixel of each block, no low-pass filter) have
hard, aliased edges: a pixel on a silhouette is either background or the full object colour. The
100-px D-NeRF lego in ../shared/datasets is such a copy. This bench makes the two 100-px versions
of NeRF-synthetic lego from lego_400 (point-sampled: the centre pixel of each 4x4 block; box: the
block's mean), on black like the D-NeRF copy, and measures:

- **edge/inner luminance**: mean luminance of the object's pixels that touch the (exactly black)
  background, over that of its other pixels. Box filtering halves it (edges blend with black);
  point sampling keeps it near 1. Computed for the D-NeRF copy as well.
- **ceilings**: PSNR against the point-sampled test frames of the *exact* scene (the 400-px frames)
  seen through a filter: the 4x4 box, or a Gaussian of variance eps2d px^2 at 100 px (what the
  rasterizer adds to every Gaussian's footprint). No model can do better through that filter.
- with `--train-steps`: static 3D Gaussians trained on each version (default flags but eps2d and
  the rasterize mode), scored on its 50 test frames.

Writes bench/results/aliasing-cpu.json (a run without `--train-steps` keeps the last training numbers).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

from common import header, results_dir, shared_data, write_result

FACTOR = 4  # 400 px to 100 px
EPS2D = (0.05, 0.15, 0.3)
TRAIN_VARIANTS = {  # name: (frames, extra flags)
    "point_classic_eps0.3": ("point", ["--rasterize-mode", "classic"]),
    "point_antialiased_eps0.3": ("point", ["--rasterize-mode", "antialiased"]),
    "point_classic_eps0.05": ("point", ["--rasterize-mode", "classic", "--eps2d", "0.05"]),
    "box_classic_eps0.3": ("box", ["--rasterize-mode", "classic"]),
    "box_classic_eps0.05": ("box", ["--rasterize-mode", "classic", "--eps2d", "0.05"]),
}


def load_over_black(path: Path):
    import imageio.v3 as iio
    import numpy as np

    image = iio.imread(path).astype(np.float64) / 255
    if image.shape[-1] == 4:
        return image[..., :3] * image[..., 3:4]
    return image[..., :3]


def downscale(rgb, kind: str):
    h, w = rgb.shape[0] // FACTOR, rgb.shape[1] // FACTOR
    if kind == "point":
        return rgb[FACTOR // 2 :: FACTOR, FACTOR // 2 :: FACTOR]
    return rgb.reshape(h, FACTOR, w, FACTOR, 3).mean((1, 3))


def gaussian_blur(rgb, sigma: float):
    """Separable Gaussian blur (sigma in pixels of `rgb`), edges replicated."""
    import numpy as np

    radius = int(3 * sigma) + 1
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    out = np.pad(rgb, ((radius, radius), (0, 0), (0, 0)), mode="edge")
    out = sum(kernel[i] * out[i : i + rgb.shape[0]] for i in range(kernel.size))
    out = np.pad(out, ((0, 0), (radius, radius), (0, 0)), mode="edge")
    return sum(kernel[i] * out[:, i : i + rgb.shape[1]] for i in range(kernel.size))


def edge_inner_ratio(images) -> float:
    """Mean over frames of (luminance of object pixels next to black) / (of the other object pixels)."""
    import numpy as np

    ratios = []
    for rgb in images:
        lum = rgb.mean(-1)
        black = lum < 0.5 / 255
        near = np.zeros_like(black)
        near[1:] |= black[:-1]
        near[:-1] |= black[1:]
        near[:, 1:] |= black[:, :-1]
        near[:, :-1] |= black[:, 1:]
        ratios.append(lum[near & ~black].mean() / lum[~near & ~black].mean())
    return float(np.mean(ratios))


def write_blender_copy(src: Path, out: Path, kind: str) -> None:
    """lego_400 as 100-px RGB-on-black frames (train: all 100; test: every 4th, 50)."""
    import imageio.v3 as iio
    import numpy as np

    for split in ("train", "test"):
        meta = json.loads((src / f"transforms_{split}.json").read_text())
        if split == "test":
            meta["frames"] = meta["frames"][::4]
        (out / split).mkdir(parents=True, exist_ok=True)
        for frame in meta["frames"]:
            small = downscale(load_over_black(src / (frame["file_path"] + ".png")), kind)
            name = Path(frame["file_path"]).name
            iio.imwrite(out / split / f"{name}.png", (small * 255 + 0.5).astype(np.uint8))
            frame["file_path"] = f"./{split}/{name}"
        (out / f"transforms_{split}.json").write_text(json.dumps(meta))


def train_static(data: Path, run: Path, steps: int, flags: list[str]) -> dict:
    """`splat train` with default flags but `flags`; the final test PSNR and Gaussian count."""
    cmd = [
        str(Path(sys.executable).with_name("splat")),
        "train",
        str(data),
        "--steps",
        str(steps),
        "--out",
        str(run),
        *flags,
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    final = [r for r in rows if r.get("eval", {}).get("split") == "test"][-1]
    return {"step": final["step"], "test_psnr": final["eval"]["psnr"], "num_gaussians": final["num_gaussians"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-steps", type=int, default=0, help="also train static lego at 100 px (0: skip)")
    args = parser.parse_args()
    lego, dnerf = shared_data("lego_400"), shared_data("dnerf_lego_100")
    if lego is None or dnerf is None:
        return 1

    test = json.loads((lego / "transforms_test.json").read_text())["frames"][::4]
    sources = [load_over_black(lego / (f["file_path"] + ".png")) for f in test]
    points = [downscale(s, "point") for s in sources]
    frames = {
        "lego_400_point_sampled_100px": points,
        "lego_400_box_filtered_100px": [downscale(s, "box") for s in sources],
        "dnerf_lego_100_train": [load_over_black(p) for p in sorted((dnerf / "train").glob("*.png"))],
    }
    edge_ratio = {name: round(edge_inner_ratio(images), 3) for name, images in frames.items()}

    filters = {"box_4x4": [downscale(s, "box") for s in sources]}
    for eps in EPS2D:  # a Gaussian of variance eps px^2 at 100 px is sqrt(eps) * FACTOR px at 400
        filters[f"gaussian_eps2d_{eps}"] = [
            downscale(gaussian_blur(s, math.sqrt(eps) * FACTOR), "point") for s in sources
        ]
    from splat.train.losses import psnr_from_mse

    ceilings = {
        name: round(psnr_from_mse(sum(((p - f) ** 2).mean() for p, f in zip(points, filtered)) / len(points)), 2)
        for name, filtered in filters.items()
    }
    result = {
        **header("aliasing", "cpu"),
        "frames": "lego_400 test views (every 4th: 50) and dnerf_lego_100's 50 training frames, RGB over black",
        "edge_inner_luminance": edge_ratio,
        "ceiling_psnr_vs_point_sampled": ceilings,
    }
    for name, value in edge_ratio.items():
        print(f"edge/inner luminance {value:.3f}  {name}")
    for name, value in ceilings.items():
        print(f"exact scene through {name}: {value:.2f} dB against the point-sampled frames")

    if args.train_steps:
        trained = {}
        with tempfile.TemporaryDirectory() as tmp:
            for kind in ("point", "box"):
                write_blender_copy(lego, Path(tmp) / kind, kind)
            for name, (kind, flags) in TRAIN_VARIANTS.items():
                trained[name] = {
                    "flags": flags,
                    **train_static(Path(tmp) / kind, Path(tmp) / "runs" / name, args.train_steps, flags),
                }
                print(f"{name}: test {trained[name]['test_psnr']:.2f} dB, {trained[name]['num_gaussians']} G")
        result["trained"] = {"date": result["date"], "steps": args.train_steps, "variants": trained}
    else:  # a quick run keeps the training numbers of the last run that trained (they carry their date)
        out = results_dir() / "aliasing-cpu.json"
        earlier = json.loads(out.read_text()) if out.exists() else {}
        if "trained" in earlier:
            result["trained"] = {"date": earlier["date"], **earlier["trained"]}
    print(f"-> {write_result(results_dir() / 'aliasing-cpu.json', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
