#!/usr/bin/env python
"""The CPU training step's heaviest kernels on one real frame, each against a peer in the same run:

- compositing (forward, backward) with the vectorised tile kernels, against the scalar tile
  kernels they replaced (read from git at `--baseline-rev`) and the per-pixel kernels (CUDA's);
- SSIM forward + backward (the training loss's structural term) with the Warp kernels, against
  the torch code path (grouped convolutions);
- SH colours forward + backward with the DC band and the higher bands apart (the trainer's sh0 /
  shN), against concatenating them into one table every step.

With `--run`, also whole training steps restored from that run (full resolution, densification
over), this code against `--baseline-rev` checked out with git archive, each in its own process,
alternated `--step-rounds` times.

The frame: a training view of a finished run (`--run`, e.g. a default `splat train` of lego), or,
without one, the garden points of ../shared/datasets (untrained splats: bigger and fuzzier).
Methods alternate round by round so that both see the same machine (this one is shared and
noisy); medians are reported. Writes bench/results/cpu_kernels-cpu.json.

    python bench/cpu_kernels.py --run runs/lego
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DATASETS, header, results_dir, write_result

HERE = Path(__file__).resolve().parent
BASELINE_REV = "5773117"  # the last revision with the scalar tile kernels


def frame_from_run(run: str):
    """The rasterizer's projected inputs of one full-resolution training view of `run`, the SH
    tables and the ground truth, captured from the trainer's own render."""
    import torch

    import splat.renderer.rasterization as R
    from splat.train.runs import restore_trainer
    from splat.train.trainer import sh_degree_at

    tr = restore_trainer(Path(run), overrides={"max_train_seconds": 0.0, "steps": 10**9, "checkpoint_every": 10**9})
    captured = {}
    original = R.rasterize_to_pixels

    def capture(*args, **kwargs):
        captured["args"], captured["kwargs"] = args, kwargs
        return original(*args, **kwargs)

    R.rasterize_to_pixels = capture
    try:
        index = tr.data.train_indices[0]
        gt, _ = tr.ground_truth(index, tr.eval_background)
        with torch.no_grad():
            image, _, info = tr.render(index, tr.eval_background, sh_degree_at(tr.step, tr.cfg))
    finally:
        R.rasterize_to_pixels = original
    a = captured["args"]
    names = ("means2d", "conics", "colors", "opacities", "width", "height", "tile_size", "isect_offsets", "flatten_ids")
    frame = dict(zip(names, a))
    frame["backgrounds"] = captured["kwargs"].get("backgrounds")
    view = tr.data.viewmat(index)[None].float()
    return frame, {
        "what": f"training view {index} of {run} at step {tr.step}",
        "gaussians": tr.num_gaussians,
        "image": image.detach(),
        "gt": gt,
        "means": tr.params["means"].detach(),
        "sh0": tr.params["sh0"].detach(),
        "shN": tr.params["shN"].detach(),
        "campos": -(view[:, :3, :3].transpose(1, 2) @ view[:, :3, 3:])[..., 0],
        "radii": info["radii"],
        "sh_degree": sh_degree_at(tr.step, tr.cfg),
    }


def frame_from_garden():
    import numpy as np
    import torch

    from splat.renderer import rasterization as R

    d = np.load(DATASETS / "garden_points" / "test_garden.npz")
    means = torch.from_numpy(d["means3d"]).float()
    N = means.shape[0]
    gen = torch.Generator().manual_seed(0)
    quats = torch.randn(N, 4, generator=gen)
    scales = torch.full((N, 3), 0.01)
    opacities = torch.full((N,), 0.7)
    sh = torch.randn(N, 16, 3, generator=gen) * 0.2
    viewmats, Ks = torch.from_numpy(d["viewmats"][:1]).float(), torch.from_numpy(d["Ks"][:1]).float()
    W, H = int(d["width"]), int(d["height"])
    p = R.project(
        means,
        quats,
        scales,
        None,
        opacities,
        sh,
        viewmats,
        Ks,
        W,
        H,
        0.01,
        1e10,
        0.3,
        3,
        "RGB",
        "classic",
        "pinhole",
        0.0,
    )
    from splat.renderer.binning import isect_offset_encode, isect_tiles, tile_grid

    tw, th = tile_grid(W, H, 16)
    _, ids, flat = isect_tiles(p["means2d"], p["radii"], p["depths"], 16, tw, th)
    frame = dict(
        means2d=p["means2d"].detach(),
        conics=p["conics"].detach(),
        colors=p["features"].detach(),
        opacities=p["opacities"].detach(),
        width=W,
        height=H,
        tile_size=16,
        isect_offsets=isect_offset_encode(ids, 1, tw, th),
        flatten_ids=flat,
        backgrounds=None,
    )
    campos = -(viewmats[:, :3, :3].transpose(1, 2) @ viewmats[:, :3, 3:])[..., 0]
    gt = torch.rand(H, W, 3, generator=gen)  # stand-in images for SSIM
    return frame, {
        "what": "garden points (untrained: 0.01 scales, opacity 0.7), camera 0",
        "gaussians": N,
        "image": torch.rand(H, W, 3, generator=gen) * 0.2 + gt * 0.8,
        "gt": gt,
        "means": means,
        "sh0": sh[:, :1].contiguous(),
        "shN": sh[:, 1:].contiguous(),
        "campos": campos,
        "radii": p["radii"],
        "sh_degree": 3,
    }


def baseline_tile_kernels(rev: str):
    """The tile kernels module of revision `rev`, loaded from git under another name."""
    src = subprocess.run(
        ["git", "show", f"{rev}:renderer/compositing_tile.py"],
        cwd=HERE.parent,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    src = src.replace("from . import ", "from splat.renderer import ").replace("from .", "from splat.renderer.")
    path = Path(tempfile.mkdtemp()) / f"compositing_tile_{rev}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compositing_methods(frame: dict, baseline) -> dict:
    """name -> (forward(), backward(forward outputs)) launching one kernel set on the frame."""
    import torch
    import warp as wp

    from splat.renderer import compositing as comp
    from splat.renderer import warp_runtime
    from splat.renderer.compositing_pixel import composite_types, pixel_kernels
    from splat.renderer.compositing_tile import lanes_for, tile_kernels

    dev = torch.device("cpu")
    C, N = frame["means2d"].shape[:2]
    W, H, ts = frame["width"], frame["height"], frame["tile_size"]
    D = frame["colors"].shape[-1]
    vecD, _, _, Grads = composite_types(D)
    A = warp_runtime.array
    gen = torch.Generator().manual_seed(1)
    v_colors = torch.randn((C, H, W, D), generator=gen) * 1e-3
    v_alphas = torch.randn((C, H, W, 1), generator=gen) * 1e-3
    splats = comp.pack_splats(frame["means2d"], frame["conics"], frame["opacities"])
    n_tiles = frame["isect_offsets"].numel()

    def inputs():
        grid = comp._tile_grid(C, N, W, H, ts, frame["isect_offsets"], frame["flatten_ids"])
        return grid, comp._splats_struct(D, splats, frame["colors"], frame["backgrounds"])

    def forward(kernel, per_pixel: bool):
        out = (
            torch.empty((C, H, W, D)),
            torch.empty((C, H, W, 1)),
            torch.empty((C, H, W)),
            torch.empty((C, H, W), dtype=torch.int32),
        )
        grid, spl = inputs()
        dim = n_tiles * ts * ts if per_pixel else n_tiles
        grain = warp_runtime.DEFAULT_GRAIN if per_pixel else comp.TILE_GRAIN
        warp_runtime.launch(kernel, dim, [grid, spl], [comp._image_struct(D, *out)], device=dev, grain=grain)
        return out

    def backward(kernel, per_pixel: bool, out, scratch: bool):
        S = warp_runtime.num_shards(dev)
        g = [
            torch.zeros((S, C * N, 2)),
            torch.zeros((S, C * N, 3)),
            torch.zeros((S, C * N)),
            torch.zeros((S, C * N, D)),
            torch.zeros((1, 1, 2)),
        ]
        grads = Grads()
        grads.means2d, grads.conics = A(g[0], wp.vec2, 2), A(g[1], wp.vec3, 2)
        grads.opacities, grads.colors = A(g[2], None, 2), A(g[3], vecD, 2)
        grads.absgrad, grads.means2d_abs = 0, A(g[4], wp.vec2, 2)
        grid, spl = inputs()
        ins = [grid, spl, comp._image_struct(D, *out), A(v_colors, vecD), A(v_alphas)]
        outs = [grads]
        if scratch:  # the scalar tile kernels kept per-pixel state in global scratch buffers
            outs += [A(torch.empty(C * H * W)), A(torch.empty((C * H * W, D)), vecD)]
        dim = n_tiles * ts * ts if per_pixel else n_tiles
        grain = warp_runtime.DEFAULT_GRAIN if per_pixel else comp.TILE_GRAIN
        warp_runtime.launch(kernel, dim, ins, outs, device=dev, sharded=True, grain=grain)
        return [t.sum(0) for t in g[:4]]

    sets = {
        "tile (vectorised)": (tile_kernels(D, lanes_for(ts)), False, False),
        "tile (scalar, baseline)": (baseline.tile_kernels(D), False, True),
        "pixel (CUDA's kernels)": (pixel_kernels(D), True, False),
    }
    return {
        name: (lambda k=k, p=p: forward(k[0], p), lambda out, k=k, p=p, s=s: backward(k[1], p, out, s))
        for name, (k, p, s) in sets.items()
    }


STEP_SNIPPET = """
import json, resource, sys, time
from pathlib import Path
import splat
from splat.train.runs import restore_trainer
run, steps = sys.argv[1], int(sys.argv[2])
tr = restore_trainer(Path(run), overrides={"max_train_seconds": 0.0, "steps": 10**9, "checkpoint_every": 10**9})
tr.downscale_at = lambda step: 1
tr.strategy.refine_stop_iter = 0  # late training: densification over, as at the end of a default run
for _ in range(3):
    tr.train_step()
u0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(steps):
    tr.train_step()
wall, u1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
cpu = u1.ru_utime + u1.ru_stime - u0.ru_utime - u0.ru_stime
print(json.dumps({"ms_per_step": wall / steps * 1e3, "cpu_ms_per_step": cpu / steps * 1e3, "splat": splat.__file__}))
"""


def revision_package(rev: str) -> Path:
    """A folder importable as `splat` (on PYTHONPATH) holding revision `rev`'s code (git archive)."""
    root = Path(tempfile.mkdtemp()) / rev
    tree = root / "tree"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev], cwd=HERE.parent, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    package = root / "pkg" / "splat"
    package.mkdir(parents=True)
    for f in (tree / "splat").iterdir():
        (package / f.name).symlink_to(f)
    for folder in ("renderer", "fields", "train", "datasets", "viewer", "scenes"):
        (package / folder).symlink_to(tree / folder)
    return root / "pkg"


def bench_steps(run: str, rev: str, steps: int, rounds: int) -> dict:
    """Whole training steps (full resolution, densification over) restored from `run`, this code
    against revision `rev`, each round a fresh process for each, alternated."""
    import json
    import os

    package = revision_package(rev)
    # run as a script file: `python -c` would put the working directory (this checkout, with its
    # own splat/) ahead of PYTHONPATH
    script = package.parent / "step.py"
    script.write_text(STEP_SNIPPET)
    rows: dict[str, list] = {"this code": [], f"baseline {rev}": []}
    for _ in range(rounds):
        for name, path in (("this code", None), (f"baseline {rev}", package)):
            env = dict(os.environ)
            if path is not None:
                env["PYTHONPATH"] = f"{path}{os.pathsep}{env.get('PYTHONPATH', '')}"
            out = subprocess.run(
                [sys.executable, str(script), run, str(steps)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                cwd=HERE.parent,
            )
            row = json.loads(out.stdout.strip().splitlines()[-1])
            expected = str(path) if path is not None else str(HERE.parent)
            if not row.pop("splat").startswith(expected):
                raise RuntimeError(f"{name}: imported splat from elsewhere than {expected}")
            rows[name].append(row)
    report = {
        name: {
            "ms_per_step": round(statistics.median(r["ms_per_step"] for r in v), 1),
            "cpu_ms_per_step": round(statistics.median(r["cpu_ms_per_step"] for r in v), 1),
            "rounds": [round(r["ms_per_step"], 1) for r in v],
        }
        for name, v in rows.items()
    }
    report["speedup"] = round(report[f"baseline {rev}"]["ms_per_step"] / report["this code"]["ms_per_step"], 2)
    report["steps_per_measurement"] = steps
    return report


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1e3, 2)


def bench_compositing(frame: dict, baseline, rounds: int) -> dict:
    import torch

    methods = compositing_methods(frame, baseline)
    times = {name: {"forward": [], "backward": []} for name in methods}
    results = {}
    for name, (fwd, bwd) in methods.items():  # warm-up (compilation), and the outputs compared
        out = fwd()
        results[name] = (out[0], bwd(out))
    for _ in range(rounds):
        for name, (fwd, bwd) in methods.items():
            t0 = time.perf_counter()
            out = fwd()
            t1 = time.perf_counter()
            bwd(out)
            times[name]["forward"].append(t1 - t0)
            times[name]["backward"].append(time.perf_counter() - t1)
    ref_image, ref_grads = results["tile (scalar, baseline)"]
    report = {}
    for name, t in times.items():
        image, grads = results[name]
        report[name] = {
            "forward_ms": median_ms(t["forward"]),
            "backward_ms": median_ms(t["backward"]),
            "max_image_difference_to_baseline": float((image - ref_image).abs().max()),
            "max_relative_gradient_difference_to_baseline": max(
                float((a - b).abs().max() / b.abs().max().clamp(min=1e-30)) for a, b in zip(grads, ref_grads)
            ),
        }
    base = report["tile (scalar, baseline)"]
    new = report["tile (vectorised)"]
    report["speedup_over_baseline"] = {
        "forward": round(base["forward_ms"] / new["forward_ms"], 2),
        "backward": round(base["backward_ms"] / new["backward_ms"], 2),
    }
    del torch
    return report


def bench_ssim(extra: dict, rounds: int) -> dict:
    import torch

    from splat.train import losses

    img = extra["image"].clamp(0, 1).contiguous().requires_grad_()
    gt = extra["gt"].contiguous()

    def kernels():
        (1 - losses.ssim_map(img, gt).mean()).backward()

    def torch_path():
        (1 - losses.ssim_map_torch(img, gt).mean()).backward()

    for f in (kernels, torch_path):
        f()
    times = {"warp kernels": [], "torch": []}
    for _ in range(rounds):
        for name, f in (("warp kernels", kernels), ("torch", torch_path)):
            img.grad = None
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
    with torch.no_grad():
        difference = float((losses.ssim_map(img, gt) - losses.ssim_map_torch(img, gt)).abs().max())
    out = {name: {"forward_backward_ms": median_ms(v)} for name, v in times.items()}
    out["speedup"] = round(out["torch"]["forward_backward_ms"] / out["warp kernels"]["forward_backward_ms"], 2)
    out["max_map_difference"] = difference
    out["image"] = list(img.shape)
    return out


def bench_sh(extra: dict, rounds: int) -> dict:
    import torch

    from splat.renderer.spherical_harmonics import sh_colors

    degree = max(1, extra["sh_degree"])
    sh0 = extra["sh0"].clone().requires_grad_()
    shN = extra["shN"].clone().requires_grad_()
    means = extra["means"].clone().requires_grad_()
    w = torch.randn((1, means.shape[0], 3), generator=torch.Generator().manual_seed(2))

    def apart():
        (sh_colors(degree, means, extra["campos"], sh0, extra["radii"], shN) * w).sum().backward()

    def concatenated():
        (sh_colors(degree, means, extra["campos"], torch.cat([sh0, shN], dim=1), extra["radii"]) * w).sum().backward()

    for f in (apart, concatenated):
        f()
    times = {"sh0 and shN apart": [], "concatenated every step": []}
    for _ in range(rounds):
        for name, f in (("sh0 and shN apart", apart), ("concatenated every step", concatenated)):
            for t in (sh0, shN, means):
                t.grad = None
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
    out = {name: {"forward_backward_ms": median_ms(v)} for name, v in times.items()}
    out["speedup"] = round(
        out["concatenated every step"]["forward_backward_ms"] / out["sh0 and shN apart"]["forward_backward_ms"], 2
    )
    out["degree"] = degree
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="", help="a finished run folder (a training view of it is the frame)")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--baseline-rev", default=BASELINE_REV)
    p.add_argument("--step-rounds", type=int, default=3, help="whole-step rounds against the baseline (with --run)")
    args = p.parse_args(argv)
    if not args.run and not (DATASETS / "garden_points").is_dir():
        print("no --run and no ../shared/datasets/garden_points: nothing to benchmark", file=sys.stderr)
        return 1
    from splat.allocator import keep_freed_memory

    keep_freed_memory()
    frame, extra = frame_from_run(args.run) if args.run else frame_from_garden()
    baseline = baseline_tile_kernels(args.baseline_rev)
    result = {
        **header("cpu_kernels", "cpu"),
        "frame": extra["what"],
        "gaussians": extra["gaussians"],
        "tile_pairs": int(frame["flatten_ids"].numel()),
        "image": [frame["height"], frame["width"]],
        "rounds": args.rounds,
        "baseline_rev": args.baseline_rev,
        "compositing": bench_compositing(frame, baseline, args.rounds),
        "ssim": bench_ssim(extra, args.rounds),
        "sh": bench_sh(extra, args.rounds),
    }
    if args.run and args.step_rounds > 0:
        result["training_step"] = bench_steps(args.run, args.baseline_rev, 10, args.step_rounds)
    c, s, h = result["compositing"], result["ssim"], result["sh"]
    for name in ("tile (vectorised)", "tile (scalar, baseline)", "pixel (CUDA's kernels)"):
        print(f"compositing {name}: forward {c[name]['forward_ms']} ms, backward {c[name]['backward_ms']} ms")
    print(f"compositing speedup over the scalar tile kernels: {c['speedup_over_baseline']}")
    kernels, peer = s["warp kernels"]["forward_backward_ms"], s["torch"]["forward_backward_ms"]
    print(f"SSIM forward+backward: kernels {kernels} ms, torch {peer} ms (x{s['speedup']})")
    apart, joined = h["sh0 and shN apart"]["forward_backward_ms"], h["concatenated every step"]["forward_backward_ms"]
    print(f"SH forward+backward: apart {apart} ms, concatenated {joined} ms (x{h['speedup']})")
    if "training_step" in result:
        t = result["training_step"]
        base = t[f"baseline {args.baseline_rev}"]["ms_per_step"]
        print(f"training step: {t['this code']['ms_per_step']} ms vs {base} ms (x{t['speedup']})")
    out = write_result(results_dir() / "cpu_kernels-cpu.json", result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
