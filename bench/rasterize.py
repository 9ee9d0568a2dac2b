#!/usr/bin/env python
"""Rasterizer benchmark: forward and forward+backward time and peak memory of `splat.rasterize`
against a peer measured in the same run.

On the CPU, `splat-pixel` is splat with its per-pixel compositing kernels (the ones CUDA runs)
in place of the CPU per-tile kernels.

Peers (`--peers`): the vectorised pure-torch rasterizer (`splat.renderer.torch_impl.rasterize_torch`,
the same pipeline in torch ops, autograd for the backward; the default on the CPU) and gsplat's
`rasterization()` (CUDA only; the default there).

Scenes: (a) the real garden points of `../shared/datasets/garden_points/test_garden.npz`
(138,766 Gaussians, 3 cameras, 648x420) and (b) a synthetic 1M-Gaussian scene at 1920x1080.

Each (scene, method) runs in a fresh subprocess so its peak memory is its own: CPU memory is the
peak of bytes allocated above the loaded scene (allocator statistics, sampled every millisecond),
CUDA memory is `torch.cuda.max_memory_allocated` above the loaded scene. Outputs are compared
pixel by pixel. Every worker runs with the same malloc: jemalloc when installed (Debian package
libjemalloc2; PyTorch's advice for CPU work: with glibc malloc the torch peer's forward+backward
runs 2x slower and, on the 1M scene, retains more than 24 GB), else glibc.

    python bench/rasterize.py                       # every scene, auto device
    python bench/rasterize.py --scenes garden --device cpu --repeats 3
    python bench/rasterize.py --device cuda --peers torch,gsplat --reference-device cuda
Writes bench/results/rasterize-<device>.json.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import device_name, results_dir, versions, write_result

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


# ------------------------------------------------------------------------------------------------
# Worker: one (scene, method) in its own process
# ------------------------------------------------------------------------------------------------


JEMALLOC = Path("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")


def allocator_in_use() -> str:
    with open("/proc/self/maps") as f:
        return "jemalloc" if "libjemalloc" in f.read() else "glibc"


class PeakMemory:
    """Peak bytes allocated (live heap allocations) above a baseline, sampled every millisecond.

    Counts what the allocator hands out (jemalloc `stats.allocated`, or glibc `mallinfo2`), not
    resident pages, so memory an allocator keeps after a free does not inflate the figure.
    """

    class _MallInfo2(ctypes.Structure):
        _fields_ = [
            (n, ctypes.c_size_t)
            for n in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    def __init__(self):
        self.libc = ctypes.CDLL(None)
        self.jemalloc = allocator_in_use() == "jemalloc"
        if not self.jemalloc:
            self.libc.mallinfo2.restype = self._MallInfo2

    def used(self) -> int:
        if self.jemalloc:
            epoch = ctypes.c_uint64(1)
            self.libc.mallctl(b"epoch", None, None, ctypes.byref(epoch), ctypes.c_size_t(8))
            value, size = ctypes.c_size_t(0), ctypes.c_size_t(8)
            self.libc.mallctl(b"stats.allocated", ctypes.byref(value), ctypes.byref(size), None, ctypes.c_size_t(0))
            return value.value
        m = self.libc.mallinfo2()
        return m.uordblks + m.hblkhd

    def __enter__(self):
        self.base = self.used()
        self.peak = self.base
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.used())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self.used())

    @property
    def mb(self) -> float:
        return (self.peak - self.base) / 2**20


def make_renderer(method: str, scene: dict):

    if method in ("splat", "splat-pixel"):
        import splat
        from splat.renderer import compositing

        if method == "splat-pixel":  # the per-pixel (CUDA-path) compositing kernels, run on the CPU
            compositing.KERNEL_VARIANT["cpu"] = "pixel"
        return lambda p: splat.rasterize(**p, **scene["static"])[:2]
    if method == "torch":
        from splat.renderer.torch_impl import rasterize_torch

        return lambda p: rasterize_torch(**p, **scene["static"])
    if method == "gsplat":
        from gsplat import rasterization

        return lambda p: rasterization(**p, **scene["static"], packed=False)[:2]
    raise ValueError(method)


def worker(args) -> dict:
    import torch

    from scenes import SCENES

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    raw = SCENES[args.scene]()
    learnable = ("means", "quats", "scales", "opacities", "colors")
    params = {k: raw[k].to(device, dtype) for k in learnable}
    static = {k: (v.to(device, dtype) if torch.is_tensor(v) else v) for k, v in raw.items() if k not in learnable}
    scene = {"static": static}
    render = make_renderer(args.method, scene)
    cuda = device.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def forward():
        with torch.no_grad():
            out = render(params)
        sync()
        return out

    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    weights = None

    def forward_backward():
        nonlocal weights
        for v in leaves.values():
            v.grad = None
        colors, alphas = render(leaves)
        if weights is None:
            weights = torch.rand(colors.shape, generator=torch.Generator().manual_seed(0)).to(device)
        ((colors * weights).sum() + alphas.sum()).backward()
        sync()

    def timed(fn, repeats, warmup):
        for _ in range(warmup):
            fn()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        times = []
        with PeakMemory() as mem:
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else mem.mb
        return sorted(times)[len(times) // 2], peak_mb

    if args.forward_only:  # the float64 reference image only
        image, alpha = forward()
        torch.save({"image": image.cpu(), "alpha": alpha.cpu()}, args.image_out)
        return {"scene": args.scene, "method": args.method, "dtype": args.dtype}
    fwd_s, fwd_mb = timed(forward, args.repeats, args.warmup)
    fb_s, fb_mb = timed(forward_backward, args.repeats, args.warmup)
    image, alpha = forward()
    torch.save({"image": image.cpu(), "alpha": alpha.cpu()}, args.image_out)
    return {
        "scene": args.scene,
        "method": args.method,
        "gaussians": int(params["means"].shape[0]),
        "cameras": int(static["viewmats"].shape[0]),
        "width": static["width"],
        "height": static["height"],
        "forward_ms": fwd_s * 1000,
        "forward_backward_ms": fb_s * 1000,
        "forward_peak_mb": fwd_mb,
        "forward_backward_peak_mb": fb_mb,
        "repeats": args.repeats,
        "warmup": args.warmup,
    }


# ------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------


def run_worker(scene, method, device, repeats, warmup, image_out, allocator, extra=()) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--scene",
        scene,
        "--method",
        method,
        "--device",
        device,
        "--repeats",
        str(repeats),
        "--warmup",
        str(warmup),
        "--image-out",
        image_out,
        *extra,
    ]
    env = dict(os.environ)
    if allocator == "jemalloc":
        env["LD_PRELOAD"] = f"{JEMALLOC} {env.get('LD_PRELOAD', '')}".strip()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        why = "killed: out of memory?" if proc.returncode in (-9, 137) else proc.stderr[-3000:]
        raise RuntimeError(f"{scene}/{method} failed (exit {proc.returncode}): {why}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["allocator"] = allocator
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    p.add_argument("--scenes", default="garden,synthetic_1m")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of splat (median reported)")
    p.add_argument(
        "--peer-repeats",
        type=int,
        default=None,
        help="timed runs of the peer (default: as --repeats on CUDA, 1 on CPU)",
    )
    p.add_argument(
        "--allocator",
        choices=["jemalloc", "glibc"],
        default=None,
        help="malloc for every worker (default: jemalloc when installed, as PyTorch recommends on CPU)",
    )
    p.add_argument(
        "--peers",
        default=None,
        help="comma-separated peers among torch, gsplat (default: gsplat on CUDA, torch on the CPU)",
    )
    p.add_argument(
        "--reference-device",
        choices=["cpu", "cuda"],
        default=None,
        help="where the float64 reference render runs (default: cpu)",
    )
    p.add_argument("--no-pixel", action="store_true", help="on the CPU, skip the splat-pixel variant")
    p.add_argument("--out", default=None)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--scene", help=argparse.SUPPRESS)
    p.add_argument("--method", help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--image-out", help=argparse.SUPPRESS)
    p.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    p.add_argument("--forward-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    allocator = args.allocator or ("jemalloc" if JEMALLOC.exists() else "glibc")
    peers = args.peers.split(",") if args.peers else ["gsplat" if device == "cuda" else "torch"]
    ref_device = args.reference_device or "cpu"
    peer_repeats = args.peer_repeats or (args.repeats if device == "cuda" else 1)
    # The torch peer has nothing to compile or load; on the CPU its warm-up run would only double
    # a long measurement, so it runs cold once. splat always warms up (kernel load).
    peer_warmup = 1 if device == "cuda" else 0
    methods = [("splat", args.repeats, 1)] + [(peer, peer_repeats, peer_warmup) for peer in peers]
    if device == "cpu" and not args.no_pixel:
        methods.insert(1, ("splat-pixel", args.repeats, 1))
    rows, comparisons = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for scene in args.scenes.split(","):
            images = {}
            for method, reps, warm in methods:
                out = f"{tmp}/{scene}-{method}.pt"
                print(f"[{scene}] {method}: running ...", file=sys.stderr, flush=True)
                rows.append(run_worker(scene, method, device, reps, warm, out, allocator))
                images[method] = torch.load(out)
            # float64 reference (the torch pipeline in double precision) for every float32 render
            ref_out = f"{tmp}/{scene}-reference64.pt"
            print(f"[{scene}] float64 torch reference on {ref_device}: running ...", file=sys.stderr, flush=True)
            run_worker(scene, "torch", ref_device, 1, 0, ref_out, allocator, ("--dtype", "float64", "--forward-only"))
            ref = torch.load(ref_out)["image"]

            def max_diff(a, b):
                return (a.double() - b.double()).abs().max().item()

            comparisons[scene] = {"splat_vs_float64_max_abs_diff": max_diff(images["splat"]["image"], ref)}
            for peer in peers:
                diff = (images["splat"]["image"] - images[peer]["image"]).abs()
                comparisons[scene][peer] = {
                    "max_abs_diff": diff.max().item(),
                    "mean_abs_diff": diff.mean().item(),
                    "alpha_max_abs_diff": (images["splat"]["alpha"] - images[peer]["alpha"]).abs().max().item(),
                    "vs_float64_max_abs_diff": max_diff(images[peer]["image"], ref),
                }

    by = {(r["scene"], r["method"]): r for r in rows}
    ratio_cols = "".join(f" {'fwd x ' + p:>12s} {'f+b x ' + p:>12s}" for p in peers)
    header = (
        f"{'scene':14s} {'method':11s} {'fwd ms':>9s} {'fwd+bwd ms':>11s} {'fwd MB':>8s} {'f+b MB':>8s}{ratio_cols}"
    )
    print(f"\nrasterize benchmark on {device_name(device)} ({device}, {allocator}); ratios: peer time / splat time")
    print(header)
    print("-" * len(header))
    for r in rows:
        ours = by[(r["scene"], "splat")]
        r["speedup_vs"] = {}
        for peer in peers:
            theirs = by[(r["scene"], peer)]
            r["speedup_vs"][peer] = {
                "forward": theirs["forward_ms"] / ours["forward_ms"],
                "forward_backward": theirs["forward_backward_ms"] / ours["forward_backward_ms"],
            }
        # the first peer's ratios under the names earlier results use
        r["speedup_forward_vs_peer"] = r["speedup_vs"][peers[0]]["forward"]
        r["speedup_forward_backward_vs_peer"] = r["speedup_vs"][peers[0]]["forward_backward"]
        ratios = "".join(
            f" {x['forward']:12.2f} {x['forward_backward']:12.2f}" if r["method"] == "splat" else f" {'':12s} {'':12s}"
            for x in r["speedup_vs"].values()
        )
        print(
            f"{r['scene']:14s} {r['method']:11s} {r['forward_ms']:9.1f} {r['forward_backward_ms']:11.1f} "
            f"{r['forward_peak_mb']:8.1f} {r['forward_backward_peak_mb']:8.1f}{ratios}"
        )
    for scene, c in comparisons.items():
        for peer in peers:
            print(
                f"{scene}: splat vs {peer} images: max |diff| {c[peer]['max_abs_diff']:.2e}, mean |diff| "
                f"{c[peer]['mean_abs_diff']:.2e}; "
                f"against a float64 render: splat {c['splat_vs_float64_max_abs_diff']:.2e}, "
                f"{peer} {c[peer]['vs_float64_max_abs_diff']:.2e}"
            )

    result = {
        "benchmark": "rasterize",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "device_name": device_name(device),
        "threads": int(os.environ.get("SPLAT_NUM_THREADS", torch.get_num_threads())),
        "allocator": allocator,
        "versions": versions(),
        "peer": peers[0],
        "peers": peers,
        "reference_device": ref_device,
        "results": rows,
        "output_comparison": comparisons,
        "notes": "times are medians; memory is peak growth above the loaded scene (CPU: malloc bytes in use); "
        "the loss is sum(random weights * colors) + sum(alphas)",
    }
    out = write_result(Path(args.out or results_dir() / f"rasterize-{device}.json"), result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
