#!/usr/bin/env python
"""Where a trained D-NeRF scene's error is: in the parts that move or in the parts that stay.

    python bench/train_dnerf.py --variants defaults --seconds 300   # trains outputs/bench/train_dnerf/defaults
    python bench/dnerf_error_split.py                               # then this, on that run

For a run of moving 3D Gaussians (splat/motion.py): a Gaussian "moves" when its centre leaves
its mean position by more than `--moves` (scene units, normalised) at one of 11 times over
[0, 1]. In each frame (training, val, test) the moving Gaussians are drawn alone at the frame's
time; pixels where they cover more than 30% (grown by one pixel, so that their edges count) are
the moving pixels. Reported per split: PSNR, the moving pixels' share of the pixels and of the
squared error, and the PSNR each split would have if the moving pixels (or the others) were
exact.

Motion refit (`--refit-steps`, 0 skips it): for each frame, the K motions alone (their rotation and
translation at the frame's time; the Gaussians fixed) are fitted to that frame's image with the
training loss, and the frame re-scored. It bounds what better motion at held-out times could
gain with these Gaussians: a large gain means the motion at those times is wrong, a small one
that the Gaussians themselves (shape, colour from that view) are. Writes
bench/results/dnerf_error_split-<device>.json.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from common import header, results_dir, write_result

HERE = Path(__file__).resolve().parent
TIMES = 11
COVERED = 0.3


def moving_mask(params, bases, moving, camera, viewmat, K):
    """Pixels (H, W) the moving Gaussians cover at the camera's time, grown by one pixel."""
    import torch

    from splat.gaussians import rasterize_gaussians
    from splat.motion import deform

    drawn = deform(params, bases, float(camera.time))
    drawn["opacities"] = torch.where(moving, drawn["opacities"], torch.full_like(drawn["opacities"], -30.0))
    _, alpha, _ = rasterize_gaussians(
        drawn, viewmat[None], K[None], camera.width, camera.height, sh_degree=0, backgrounds=torch.zeros(1, 3)
    )
    covered = (alpha[0, ..., 0] > COVERED).float()[None, None]
    return torch.nn.functional.max_pool2d(covered, 3, 1, 1)[0, 0] > 0


def refit_psnr(trainer, index: int, steps: int) -> float:
    """PSNR of frame `index` after fitting only the motions at its time to its image (`steps` Adam
    steps; the trainer's Gaussians and motions are left as they were)."""
    import torch

    from splat.motion import bases_at
    from splat.train import losses
    from splat.train.trainer import sh_degree_at

    saved = trainer.bases
    background = trainer.eval_background
    q, t = bases_at({k: v.detach() for k, v in saved.items()}, float(trainer.data.camera(index).time))
    rotations = torch.nn.Parameter(q[:, None].repeat(1, 2, 1))  # two equal knots: the same motion at any time
    translations = torch.nn.Parameter(t[:, None].repeat(1, 2, 1))
    trainer.bases = {"rotations": rotations, "translations": translations, "pivots": saved["pivots"].detach()}
    optimizer = torch.optim.Adam(
        [
            {"params": [rotations], "lr": 1e-3},
            {"params": [translations], "lr": 1e-3 * trainer.scene_extent},
        ]
    )
    params = trainer.params
    trainer.params = {k: v.detach() for k, v in params.items()}
    try:
        gt, mask = trainer.ground_truth(index, background)
        sh_degree = sh_degree_at(trainer.step, trainer.cfg)  # as `render_eval` scores the frame
        for _ in range(steps):
            image, _, _ = trainer.render(index, background, sh_degree)
            loss = losses.photometric_loss(image, gt, mask, trainer.cfg.ssim_lambda)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            image, _, _ = trainer.render(index, background, sh_degree)
            return float(losses.psnr(image.clamp(0, 1), gt, mask))
    finally:
        trainer.bases, trainer.params = saved, params


def split_scores(trainer, moving, indices, refit_steps: int) -> dict:
    import torch

    from splat.train import losses

    se_moving = se_still = 0.0
    n_moving = n_all = 0
    params = {k: v.detach() for k, v in trainer.params.items()}
    frame_psnr, refit = [], []
    for i in indices:
        if refit_steps > 0:
            with torch.enable_grad():
                refit.append(refit_psnr(trainer, i, refit_steps))
        gt, gt_mask = trainer.ground_truth(i, trainer.eval_background)
        image = trainer.render_eval(i, trainer.eval_background).clamp(0, 1)
        frame_psnr.append(float(losses.psnr(image, gt, gt_mask)))
        data = trainer.data
        mask = moving_mask(params, trainer.bases, moving, data.camera(i), data.viewmat(i), data.K(i))
        error = ((image - gt) ** 2).sum(dim=-1)
        se_moving += float(error[mask].sum())
        se_still += float(error[~mask].sum())
        n_moving += int(mask.sum())
        n_all += mask.numel()

    def psnr(se: float) -> float:
        return float("inf") if se == 0 else -10 * math.log10(se / n_all / 3)

    return {
        "frames": len(indices),
        "psnr": psnr(se_moving + se_still),
        "moving_pixel_share": n_moving / n_all,
        "moving_error_share": se_moving / max(se_moving + se_still, 1e-30),
        "psnr_if_moving_exact": psnr(se_still),
        "psnr_if_still_exact": psnr(se_moving),
        **(
            {
                "mean_frame_psnr": sum(frame_psnr) / len(frame_psnr),
                "mean_frame_psnr_motion_refit": sum(refit) / len(refit),
                "refit_steps": refit_steps,
            }
            if refit
            else {}
        ),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default=str(HERE.parent / "outputs" / "bench" / "train_dnerf" / "defaults"))
    p.add_argument("--moves", type=float, default=0.01, help="displacement that counts as moving (scene units)")
    p.add_argument("--refit-steps", type=int, default=150, help="motion refit per frame (0: none)")
    args = p.parse_args(argv)
    run = Path(args.run)
    if not (run / "config.json").is_file():
        print(f"{run}: no trained run (train one with bench/train_dnerf.py first)", file=sys.stderr)
        return 1
    import torch

    from splat.motion import deform
    from splat.train.runs import restore_trainer

    trainer = restore_trainer(run)
    if not trainer.moving:
        print(f"{run}: not a run of moving 3D Gaussians (model {trainer.cfg.model})", file=sys.stderr)
        return 1
    with torch.no_grad():
        params = {k: v.detach() for k, v in trainer.params.items()}
        centres = torch.stack([deform(params, trainer.bases, t)["means"] for t in torch.linspace(0, 1, TIMES).tolist()])
        moving = (centres - centres.mean(dim=0)).norm(dim=-1).max(dim=0).values > args.moves
        splits = {
            name: split_scores(trainer, moving, indices, args.refit_steps)
            for name, indices in (
                ("train", trainer.data.train_indices),
                ("val", trainer.data.val_indices),
                ("test", trainer.data.test_indices),
            )
            if indices
        }
    result = {
        **header("dnerf_error_split", "cpu"),
        "run": str(run),
        "step": trainer.step,
        "num_gaussians": int(moving.numel()),
        "moving_gaussians": int(moving.sum()),
        "moves": args.moves,
        "splits": splits,
        "notes": "moving pixels: where the Gaussians that move more than `moves` cover > 30% at the frame's time, "
        "grown by 1 px; PSNR over all pixels of a split, with the moving (or the other) pixels' error set to 0; "
        "mean_frame_psnr(_motion_refit): the mean of per-frame PSNRs, before and after fitting only the motions at "
        "each frame's time to that frame (`refit_steps` Adam steps)",
    }
    out = write_result(results_dir() / "dnerf_error_split-cpu.json", result)
    for name, s in splits.items():
        print(
            f"{name:5s} {s['psnr']:.2f} dB: moving parts {100 * s['moving_pixel_share']:.0f}% of the pixels, "
            f"{100 * s['moving_error_share']:.0f}% of the squared error; exact moving parts would give "
            f"{s['psnr_if_moving_exact']:.2f} dB"
            + (
                f"; motions refitted per frame: {s['mean_frame_psnr']:.2f} -> "
                f"{s['mean_frame_psnr_motion_refit']:.2f} dB"
                if "mean_frame_psnr_motion_refit" in s
                else ""
            )
        )
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
