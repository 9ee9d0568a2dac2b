#!/usr/bin/env python
"""Viewer frame-time benchmark: the server-side work per frame (render + JPEG encoding) at
1280x720 and at the reduced resolution used while the camera moves, for a 100k-Gaussian scene
(synthetic) and, when a trained run is given, a real scene. Peer: the pure-torch rasterizer
rendering the same frame (forward only), measured in the same run.

    python bench/viewer.py [--scene RUN_OR_PLY] [--frames 20]

Targets: >= 5 FPS at the moving resolution on the 2-core CPU; >= 30 FPS at 1280x720 on a GPU for
1M Gaussians. Writes bench/results/viewer-<device>.json.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from common import header, results_dir, write_result

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def synthetic_scene(n: int):
    import torch

    from scenes import synthetic
    from splat.gaussians import rgb_to_sh
    from splat.scene import GaussianScene

    s = synthetic(n=n, width=1280, height=720)
    splats = {
        "means": s["means"],
        "scales": torch.log(s["scales"]),
        "quats": s["quats"],
        "opacities": torch.logit(s["opacities"]),
        "sh0": rgb_to_sh(s["colors"])[:, None, :],
        "shN": torch.zeros(n, 0, 3),
    }
    return (
        GaussianScene(splats, source=f"synthetic {n:,}"),
        s["viewmats"][0].double().numpy(),
        s["Ks"][0].double().numpy(),
    )


def time_frames(render, frames: int) -> float:
    render(0)
    t0 = time.perf_counter()
    for k in range(frames):
        render(k)
    return (time.perf_counter() - t0) / frames


def training_overhead(steps: int, device: str) -> dict:
    """Training steps/s on the procedural still life, plain and with a live viewer attached (no
    browser connected), alternating runs, best of two each: `splat train --viewer`'s cost."""
    import tempfile

    from splat.scenes import dome_cameras, still_life, write_blender_dataset
    from splat.train.config import TrainConfig
    from splat.train.runs import new_trainer
    from splat.viewer.app import Viewer

    tmp = Path(tempfile.mkdtemp(prefix="splat-viewer-bench-"))
    views, K = dome_cameras(24, 128, 96)
    write_blender_dataset(still_life(), tmp / "data", views, K, 128, 96, n_test=3)
    rates = {"plain": [], "viewer": []}
    for k, kind in enumerate(["plain", "viewer"] * 2):
        cfg = TrainConfig(
            steps=steps,
            init_points=5000,
            eval_steps=[],
            save_renders=False,
            checkpoint_every=10**9,
            sh_degree=1,
            device=device,
            log_every=10**9,
        )
        trainer = new_trainer(str(tmp / "data"), tmp / f"run{k}", cfg)
        viewer = None
        if kind == "viewer":
            live = trainer.live_run()
            viewer = Viewer(live.scene, port=8093 + k, live=live)
        t0 = time.perf_counter()
        trainer.train()
        rates[kind].append(steps / (time.perf_counter() - t0))
        if viewer is not None:
            viewer.close()
    plain, with_viewer = max(rates["plain"]), max(rates["viewer"])
    return {
        "steps": steps,
        "plain_steps_per_s": plain,
        "viewer_steps_per_s": with_viewer,
        "slowdown_percent": 100 * (plain / with_viewer - 1),
        "runs": rates,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scene", help="a run folder or PLY to measure besides the synthetic scene")
    p.add_argument("--gaussians", type=int, default=100_000)
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    p.add_argument(
        "--training-steps", type=int, default=300, help="steps per run of the training-overhead test (0: skip)"
    )
    args = p.parse_args(argv)

    import numpy as np
    import torch
    from viser._image_encoding import cv2_imencode_with_fallback  # what set_background_image encodes with

    import splat
    from splat.camera import Camera
    from splat.gaussians import sh_to_rgb
    from splat.renderer.torch_impl import rasterize_torch
    from splat.viewer.client_gui import MOVING_SCALE

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    scenes = []
    scene, view, K = synthetic_scene(args.gaussians)
    base = Camera(1280, 720, K[0, 0], K[1, 1], K[0, 2], K[1, 2], view)
    scenes.append((scene.source, scene.to(device), base))
    if args.scene:
        real = splat.load(args.scene, device=device)
        if real.cameras:
            c = real.cameras[0]
            cam = Camera(1280, 720, c.fx * 1280 / c.width, c.fx * 1280 / c.width, 640, 360, c.viewmat)
        else:
            lo, hi = real.bounds()
            cam = Camera.look_at(
                (lo + hi) / 2 + np.array([0, -1.5, 0.7]) * np.linalg.norm(hi - lo),
                (lo + hi) / 2,
                width=1280,
                height=720,
                fov_x=60,
            )
        scenes.append((f"{args.scene} ({real.num_gaussians:,})", real, cam))

    rows = []
    for name, sc, cam in scenes:
        for label, scale in (("full 1280x720", 1.0), (f"moving x{MOVING_SCALE}", MOVING_SCALE)):
            c = cam.scaled(scale)

            def frame(k, sc=sc, c=c):
                # a slightly different pose every frame, as while orbiting
                a = 0.002 * k
                R = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
                v = c.viewmat.copy()
                v[:3, :3] = R @ v[:3, :3]
                v[:3, 3] = R @ v[:3, 3]
                img = sc.render(c.with_pose(v), background=(1, 1, 1))["rgb"]
                cv2_imencode_with_fallback("jpeg", (img.cpu().numpy() * 255).astype(np.uint8), 80, "rgb")

            seconds = time_frames(frame, args.frames)
            peer = None
            if device == "cpu" and scale != 1.0:
                s = sc.splats
                view = torch.from_numpy(c.viewmat)[None].float()
                Kt = torch.from_numpy(c.K)[None].float()
                colors = sh_to_rgb(s["sh0"][:, 0]).clamp(min=0)

                def peer_frame(k, s=s, view=view, Kt=Kt, colors=colors, c=c):
                    with torch.no_grad():
                        rasterize_torch(
                            s["means"],
                            s["quats"],
                            torch.exp(s["scales"]),
                            torch.sigmoid(s["opacities"]),
                            colors,
                            view,
                            Kt,
                            c.width,
                            c.height,
                            backgrounds=torch.ones(1, 3),
                        )

                peer = time_frames(peer_frame, max(2, args.frames // 5))
            rows.append(
                {
                    "scene": name,
                    "resolution": f"{c.width}x{c.height}",
                    "mode": label,
                    "frame_ms": 1000 * seconds,
                    "fps": 1 / seconds,
                    "torch_peer_frame_ms": None if peer is None else 1000 * peer,
                    "speedup_vs_torch": None if peer is None else peer / seconds,
                }
            )

    print(f"\nviewer frame time (render + JPEG) on {device}")
    print(f"{'scene':32s} {'mode':14s} {'size':10s} {'ms':>8s} {'FPS':>6s} {'torch ms':>9s} {'x':>6s}")
    for r in rows:
        peer = f"{r['torch_peer_frame_ms']:9.0f} {r['speedup_vs_torch']:6.1f}" if r["torch_peer_frame_ms"] else ""
        print(
            f"{r['scene'][:32]:32s} {r['mode']:14s} {r['resolution']:10s} {r['frame_ms']:8.1f} {r['fps']:6.1f} {peer}"
        )

    overhead = None
    if args.training_steps > 0:
        overhead = training_overhead(args.training_steps, device)
        print(
            f"\ntraining with --viewer and no browser: {overhead['viewer_steps_per_s']:.2f} steps/s vs "
            f"{overhead['plain_steps_per_s']:.2f} plain ({overhead['slowdown_percent']:+.1f}%)"
        )

    result = {
        **header("viewer", device),
        "results": rows,
        "training_overhead": overhead,
        "notes": "server-side time per frame: render with splat + JPEG encoding as the viewer sends it; "
        "network and browser decoding excluded",
    }
    out = write_result(results_dir() / f"viewer-{device}.json", result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
