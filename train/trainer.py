"""3D Gaussian splatting trainer: one image per step, Adam, a densification strategy, periodic
evaluation, atomic checkpoints and exact resume.

Run folder:
    config.json        resolved configuration, dataset, normalisation
    metrics.jsonl      training log lines and evaluation results (one JSON object per line)
    checkpoints/       step_NNNNNNN.pt (written then renamed; the newest few are kept)
    renders/step_N/    test renders side by side with ground truth (ground truth | render)
    point_cloud.ply    written by `splat export`

All randomness (image order, backgrounds, splits, MCMC sampling) comes from one generator whose
state is checkpointed, and CPU gradients are summed in a fixed order, so a resumed run repeats an
uninterrupted one bit for bit on the CPU.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
from pathlib import Path

import torch

import splat
from splat.io_utils import atomic_path, write_image

from . import losses
from .config import TrainConfig
from .model import activated, init_params, random_points
from .strategies import STRATEGIES

NON_FINITE_LIMIT = 1  # a non-finite loss stops training with a message (never silently continues)


class TrainingError(RuntimeError):
    """Training cannot continue (e.g. the loss became NaN); the message says what to try."""


def checkpoint_paths(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "checkpoints").glob("step_*.pt"))


def latest_checkpoint(run_dir: Path) -> Path | None:
    paths = checkpoint_paths(run_dir)
    return paths[-1] if paths else None


class Trainer:
    def __init__(self, config: TrainConfig, dataset, run_dir: str | Path, data_path: str | None = None):
        config.validate()
        self.cfg = config
        self.data = dataset
        self.run_dir = Path(run_dir)
        self.data_path = str(data_path or dataset.root)
        self.device = torch.device(config.device)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.train_seconds = 0.0
        self._order: list[int] = []
        self._stop_requested = False
        self.step_lock = contextlib.nullcontext()  # a live viewer swaps in its lock

        bg = config.background
        if bg == "auto":
            bg = "white" if dataset.format == "blender" else "black"
        self.background_mode = bg
        self.eval_background = torch.ones(3) if bg in ("white", "random") else torch.zeros(3)

        self.dynamic = config.model == "4d" or (config.model == "auto" and dataset.is_dynamic)
        if self.dynamic and not dataset.is_dynamic:
            raise ValueError(f"model: 4d needs frames with a time (D-NeRF / nerfstudio 'time'); {dataset.root} has none")
        mcmc = config.strategy == "mcmc"
        if dataset.points is not None:
            points, colors = dataset.points, dataset.point_colors
        else:
            points, colors = random_points(config.init_points, config.init_extent * dataset.extent, self.generator)
        if points.shape[0] > config.max_gaussians:
            keep = torch.randperm(points.shape[0], generator=self.generator)[: config.max_gaussians]
            points, colors = points[keep], colors[keep]
        init_opacity = config.init_opacity if config.init_opacity is not None else (0.5 if mcmc else 0.1)
        init_scale = config.init_scale if config.init_scale is not None else (0.1 if mcmc else 1.0)
        times = torch.rand(points.shape[0], generator=self.generator) if self.dynamic else None
        self.params = init_params(points, colors, config.sh_degree, init_opacity, init_scale, times,
                                  config.init_time_scale).to(self.device)  # fmt: skip
        self.optimizers = self._make_optimizers()
        refine_stop = config.refine_stop if config.refine_stop is not None else (25_000 if mcmc else 15_000)
        common = dict(refine_start_iter=config.refine_start, refine_stop_iter=refine_stop,
                      refine_every=config.refine_every, max_gaussians=config.max_gaussians)  # fmt: skip
        if mcmc:
            self.strategy = STRATEGIES["mcmc"](cap_max=config.mcmc_cap_max, **common)
        else:
            self.strategy = STRATEGIES["default"](reset_every=config.reset_every, grow_grad2d=config.grow_grad2d,
                                                  absgrad=config.absgrad, **common)  # fmt: skip
        self.strategy_state = self.strategy.initialize_state(scene_scale=self.scene_extent, n=self.num_gaussians)

    # ------------------------------------------------------------------------------------------
    # set-up

    def _make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.cfg
        lrs = {
            "means": c.lr_means * self.scene_extent, "scales": c.lr_scales, "quats": c.lr_quats,
            "opacities": c.lr_opacities, "sh0": c.lr_sh0, "shN": c.lr_shN,
        }  # fmt: skip
        if "quats_right" in self.params:
            lrs["quats_right"] = c.lr_quats
        return {name: torch.optim.Adam([self.params[name]], lr=lr, eps=1e-15) for name, lr in lrs.items()}

    @property
    def scene_extent(self) -> float:
        """The scene scale of INRIA 3DGS / gsplat: 1.1 x the camera radius (1.1 after normalisation)."""
        return 1.1 * self.data.extent

    @property
    def num_gaussians(self) -> int:
        return int(self.params["means"].shape[0])

    def lr_means(self, step: int) -> float:
        """Exponential decay over the run; with a time budget, over whichever limit comes first
        (so the schedule completes within the budget; such runs then depend on timing)."""
        c = self.cfg
        return c.lr_means * self.scene_extent * (c.lr_means_final / c.lr_means) ** self.progress(step)

    def progress(self, step: int) -> float:
        """Completed fraction of the run: by steps, or by training time when that limit comes first."""
        t = step / max(self.cfg.steps, 1)
        if self.cfg.max_train_seconds > 0:
            t = max(t, self.train_seconds / self.cfg.max_train_seconds)
        return min(t, 1.0)

    def downscale_at(self, step: int) -> int:
        factor = 1
        for start, f in sorted(self.cfg.resolution_schedule):
            if step >= int(start):
                factor = int(f)
        return factor

    # ------------------------------------------------------------------------------------------
    # rendering

    def render(self, index: int, background: torch.Tensor, sh_degree: int, downscale: int = 1):
        cam = self.data.camera(index)
        K = self.data.K(index)
        width, height = cam.width, cam.height
        if downscale > 1:
            width, height = max(1, width // downscale), max(1, height // downscale)
            K = K.clone()
            K[0] *= width / cam.width
            K[1] *= height / cam.height
        p = activated(self.params)
        view = dict(viewmats=self.data.viewmat(index)[None].to(self.device), Ks=K[None].to(self.device), width=width,
                    height=height, sh_degree=sh_degree, backgrounds=background[None].to(self.device),
                    absgrad=self.cfg.strategy == "default" and self.cfg.absgrad)  # fmt: skip
        if self.dynamic:
            colors, alphas, info = splat.rasterize_4d(**p, **view, times=float(cam.time))
            info["num_gaussians"] = self.num_gaussians
        else:
            colors, alphas, info = splat.rasterize(p["means"], p["quats"], p["scales"], p["opacities"], p["colors"], **view)
        return colors[0], alphas[0], info

    def ground_truth(self, index: int, background: torch.Tensor, downscale: int = 1):
        rgb, mask = self.data.image(index, background)
        if downscale > 1:
            from splat.datasets.images import resize

            H, W = rgb.shape[:2]
            rgb = resize(rgb, max(1, W // downscale), max(1, H // downscale))
            if mask is not None:
                mask = resize(mask.float()[..., None], rgb.shape[1], rgb.shape[0])[..., 0] > 0.999
        return rgb.to(self.device), (None if mask is None else mask.to(self.device))

    # ------------------------------------------------------------------------------------------
    # training

    def next_image(self) -> int:
        if not self._order:
            train = self.data.train_indices
            perm = torch.randperm(len(train), generator=self.generator).tolist()
            self._order = [train[i] for i in perm]
        return self._order.pop()

    def train_step(self) -> dict:
        """One optimiser step on `batch_size` images (for 4D data: frames at different times),
        the loss averaged over them."""
        c = self.cfg
        step = self.step
        downscale = self.downscale_at(step)
        sh_degree = sh_degree_at(step, c)
        lr = self.lr_means(step)
        for g in self.optimizers["means"].param_groups:
            g["lr"] = lr

        frames = []
        for _ in range(c.batch_size):
            index = self.next_image()
            if self.background_mode == "random":
                background = torch.rand(3, generator=self.generator)
            else:
                background = self.eval_background
            gt, mask = self.ground_truth(index, background, downscale)
            image, _, info = self.render(index, background, sh_degree, downscale)
            info["n_cameras"] = c.batch_size  # the loss averages over the batch: densification rescales by it
            self.strategy.step_pre_backward(self.params, self.optimizers, self.strategy_state, step, info)
            frames.append((image, gt, mask, info))
        loss = sum(losses.photometric_loss(image, gt, mask, c.ssim_lambda) for image, gt, mask, _ in frames) / len(frames)
        loss = loss + self.strategy.regularization(self.params)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"loss became {loss.item()} at step {step}; lower the learning rates or check the data "
                "(last checkpoint is kept)"
            )
        loss.backward()
        for opt in self.optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        infos = [f[3] for f in frames]
        stats = self.strategy.step_post_backward(
            self.params, self.optimizers, self.strategy_state, step + 1, infos if len(infos) > 1 else infos[0],
            self.generator, lr_means=lr, progress=self.progress(step + 1),
        )  # fmt: skip
        self.step = step + 1
        psnr = sum(losses.psnr(image, gt, mask) for image, gt, mask, _ in frames) / len(frames)
        return {"loss": loss.item(), "psnr": psnr, **stats}

    def train(self, progress=None) -> dict:
        """Run to `steps`, evaluating at `eval_steps`; returns the last evaluation (or {})."""
        c = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        last_eval: dict = {}
        previous = signal.getsignal(signal.SIGINT)

        def request_stop(signum, frame):
            if self._stop_requested:  # a second Ctrl-C stops at once
                signal.signal(signal.SIGINT, previous)
                raise KeyboardInterrupt
            self._stop_requested = True

        try:
            signal.signal(signal.SIGINT, request_stop)
        except ValueError:  # not the main thread: no Ctrl-C handling
            pass
        try:
            window_loss, window_psnr, window_n, window_t = 0.0, 0.0, 0, time.perf_counter()
            while self.step < c.steps and not self._stop_requested and not self.out_of_time:
                t0 = time.perf_counter()
                with self.step_lock:
                    out = self.train_step()
                self.train_seconds += time.perf_counter() - t0
                window_loss += out["loss"]
                window_psnr += out["psnr"]
                window_n += 1
                if progress is not None:
                    progress(self, out)
                if self.step % c.log_every == 0 or self.step == c.steps:
                    now = time.perf_counter()
                    self.log({"step": self.step, "train_seconds": round(self.train_seconds, 3),
                              "loss": window_loss / window_n, "psnr": window_psnr / window_n,
                              "num_gaussians": self.num_gaussians, "steps_per_second": window_n / (now - window_t),
                              **{k: v for k, v in out.items() if k not in ("loss", "psnr")}})  # fmt: skip
                    window_loss, window_psnr, window_n, window_t = 0.0, 0.0, 0, now
                final = self.step == c.steps or self.out_of_time
                if self.step in c.eval_steps or final:
                    last_eval = self.evaluate(full=final or c.eval_subset <= 0)
                if self.step % c.checkpoint_every == 0 or final:
                    self.save_checkpoint()
            if self._stop_requested:
                self.save_checkpoint()
        finally:
            try:
                signal.signal(signal.SIGINT, previous)
            except ValueError:
                pass
        return last_eval

    @property
    def interrupted(self) -> bool:
        return self._stop_requested

    @property
    def out_of_time(self) -> bool:
        return self.cfg.max_train_seconds > 0 and self.train_seconds >= self.cfg.max_train_seconds

    # ------------------------------------------------------------------------------------------
    # evaluation

    def eval_indices(self, full: bool) -> list[int]:
        test = self.data.test_indices or self.data.train_indices
        if full or self.cfg.eval_subset <= 0 or self.cfg.eval_subset >= len(test):
            return list(test)
        stride = len(test) / self.cfg.eval_subset
        return [test[int(k * stride)] for k in range(self.cfg.eval_subset)]

    @torch.no_grad()
    def evaluate(self, full: bool = True, save_renders: bool | None = None) -> dict:
        save = self.cfg.save_renders if save_renders is None else save_renders
        sh_degree = sh_degree_at(self.step, self.cfg)
        psnrs, ssims = [], []
        out_dir = self.run_dir / "renders" / f"step_{self.step}"
        t0 = time.perf_counter()
        for index in self.eval_indices(full):
            gt, mask = self.ground_truth(index, self.eval_background)
            image, _, _ = self.render(index, self.eval_background, sh_degree)
            image = image.clamp(0, 1)
            psnrs.append(losses.psnr(image, gt, mask))
            ssims.append(float(losses.ssim(image, gt, mask)))
            if save:
                name = Path(self.data.frames[index].name).stem
                write_image(out_dir / f"{name}.png", torch.cat([gt, image], dim=1).cpu())
        result = {
            "step": self.step,
            "train_seconds": round(self.train_seconds, 3),
            "eval": {
                "psnr": sum(psnrs) / len(psnrs),
                "ssim": sum(ssims) / len(ssims),
                "lpips": None,  # no LPIPS weights are available offline
                "num_images": len(psnrs),
                "split": "test" if self.data.test_indices else "train",
                "full": bool(full),
                "seconds": round(time.perf_counter() - t0, 3),
            },
            "num_gaussians": self.num_gaussians,
        }
        self.log(result)
        return result

    # ------------------------------------------------------------------------------------------
    # run folder

    def log(self, record: dict) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def _write_config(self) -> None:
        info = {
            "splat_version": splat.__version__,
            "data": self.data_path,
            "format": self.data.format,
            "dataset": self.data.summary(),
            "normalization": self.data.normalization.to_dict(),
            "config": self.cfg.to_json(),
        }
        with atomic_path(self.run_dir / "config.json") as tmp:
            tmp.write_text(json.dumps(info, indent=2) + "\n")

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "train_seconds": self.train_seconds,
            "params": {k: v.detach().cpu() for k, v in self.params.items()},
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "strategy_state": self.strategy_state,
            "generator": self.generator.get_state(),
            "order": list(self._order),
            "config": self.cfg.to_json(),
            "normalization": self.data.normalization.to_dict(),
        }

    def save_checkpoint(self) -> Path:
        path = self.run_dir / "checkpoints" / f"step_{self.step:07d}.pt"
        with atomic_path(path) as tmp:
            torch.save(self.state_dict(), tmp)
        for old in checkpoint_paths(self.run_dir)[: -self.cfg.keep_checkpoints]:
            old.unlink(missing_ok=True)
        return path

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.train_seconds = float(state["train_seconds"])
        self.params = torch.nn.ParameterDict({k: torch.nn.Parameter(v.to(self.device)) for k, v in state["params"].items()})
        self.optimizers = self._make_optimizers()
        for k, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][k])
        self.strategy_state = state["strategy_state"]
        self.generator.set_state(state["generator"])
        self._order = list(state["order"])


def sh_degree_at(step: int, cfg: TrainConfig) -> int:
    return min(step // cfg.sh_degree_interval, cfg.sh_degree)


def seconds_to_text(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    h, rem = divmod(int(s), 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
