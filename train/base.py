"""What every trainer shares: the run folder (its layout: splat/run_folder.py), the training
loop with Ctrl-C and time budgets, evaluation on the test split, logging and atomic checkpoints.

A trainer subclass provides `train_step()`, `render_eval(index, background)`, `scene()`,
`model_stats()`, `model_text()`, `state_dict()` and `load_state_dict()`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import torch

import splat
from splat.allocator import keep_freed_memory
from splat.camera import Camera
from splat.errors import DiskFullError, InputError, TrainingError, write_error  # noqa: F401 - TrainingError re-exported
from splat.io_utils import atomic_path, open_in_place, write_image
from splat.run_folder import checkpoint_paths

from . import losses
from .config import TrainConfig, apply_model_defaults, resolve_eps2d, resolve_model, resolve_rasterize_mode
from .live import LiveRun
from .lpips import lpips_model
from .run_lock import run_lock

if TYPE_CHECKING:
    from collections.abc import Callable

    from splat.datasets import SceneDataset
    from splat.scene_protocol import Scene


class BaseTrainer:
    def __init__(self, config: TrainConfig, dataset: SceneDataset, run_dir: str | Path, data_path: str | None = None):
        config.validate()
        chosen_by_data = config.model == "auto"
        config.model = resolve_model(
            config.model, dataset.is_dynamic, dataset.is_monocular
        )  # config.json records what trained
        if chosen_by_data:
            apply_model_defaults(config)
        config.rasterize_mode = resolve_rasterize_mode(config.rasterize_mode, config.model)
        config.eps2d = resolve_eps2d(config.eps2d, config.model)
        keep_freed_memory()  # a CPU step otherwise page-faults on every large temporary (splat/allocator.py)
        self.cfg = config
        self.data = dataset
        self.run_dir = Path(run_dir)
        self.data_path = str(data_path or dataset.root)
        self.device = torch.device(config.device)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.train_seconds = 0.0
        self._stop_requested = False
        self.init_note = ""  # where the initial model came from, when the data alone does not say
        self.step_lock = contextlib.nullcontext()  # a live viewer's lock once `live_run()` made one
        self._checkpoint_seconds = 0.0  # training time at the last checkpoint
        n_train = len(dataset.train_indices)
        if config.batch_size > n_train:
            raise InputError(
                f"batch_size: {config.batch_size} is more than the {n_train} training images of {dataset.root}"
            )

        bg = config.background
        if bg == "auto":
            bg = dataset.auto_background()  # white for images with alpha, else what their borders show
        self.background_mode = bg
        self.eval_background = torch.ones(3) if bg in ("white", "random") else torch.zeros(3)

    # ------------------------------------------------------------------------------------------
    # subclass interface

    def train_step(self) -> dict:
        """One optimiser step; returns at least {"loss": float, "psnr": float}."""
        raise NotImplementedError

    def render_eval(self, index: int, background: torch.Tensor) -> torch.Tensor:
        """The model's image (H, W, 3) of dataset frame `index` over `background`."""
        raise NotImplementedError

    def scene(self) -> Scene:
        """The current model as a renderable scene in the training frame, over the live
        parameters, with the dataset's cameras (what evaluation and the live viewer render)."""
        raise NotImplementedError

    def model_stats(self) -> dict:
        """Size of the model for logs, e.g. {"num_gaussians": n}."""
        raise NotImplementedError

    def model_text(self) -> str:
        """Size of the model for the progress bar."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError

    @functools.cached_property
    def cameras(self) -> list[Camera]:
        """The dataset's cameras (every frame, in the training frame) as `splat.Camera`s."""
        return [f.camera for f in self.data.frames]

    def live_run(self) -> LiveRun:
        """A handle for a live viewer; training steps run under its lock from now on."""
        live = LiveRun(self)
        self.step_lock = live.lock
        return live

    # ------------------------------------------------------------------------------------------
    # schedule

    def progress(self, step: int) -> float:
        """Completed fraction of the run: by steps, or by training time when that limit comes first."""
        t = step / max(self.cfg.steps, 1)
        if self.cfg.max_train_seconds > 0:
            t = max(t, self.train_seconds / self.cfg.max_train_seconds)
        return min(t, 1.0)

    def ground_truth(
        self, index: int, background: torch.Tensor, downscale: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        rgb, mask = self.data.image(index, background)
        if downscale > 1:
            from splat.datasets.images import resize

            H, W = rgb.shape[:2]
            rgb = resize(rgb, max(1, W // downscale), max(1, H // downscale))
            if mask is not None:
                mask = resize(mask.float()[..., None], rgb.shape[1], rgb.shape[0])[..., 0] > 0.999
        return rgb.to(self.device), (None if mask is None else mask.to(self.device))

    # ------------------------------------------------------------------------------------------
    # training loop

    def train(self, progress: Callable[[BaseTrainer, dict], None] | None = None) -> dict:
        """Run to `steps`, evaluating at `eval_steps`; returns the last evaluation (or {})."""
        with run_lock(self.run_dir):  # one writer per run folder (a second one gets RunBusyError)
            if self.step > 0:
                self._truncate_metrics(self.step)  # records of steps after the checkpoint are replayed
            self._write_config()
            return self._train(progress)

    def _train(self, progress) -> dict:
        c = self.cfg
        self._checkpoint_seconds = self.train_seconds
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
                    self.log(
                        {
                            "step": self.step,
                            "train_seconds": round(self.train_seconds, 3),
                            "loss": window_loss / window_n,
                            "psnr": window_psnr / window_n,
                            **self.model_stats(),
                            "steps_per_second": window_n / (now - window_t),
                            **{k: v for k, v in out.items() if k not in ("loss", "psnr")},
                        }
                    )
                    window_loss, window_psnr, window_n, window_t = 0.0, 0.0, 0, now
                final = self.step == c.steps or self.out_of_time
                if self.step in c.eval_steps or final:
                    last_eval = self.evaluate(full=final or c.eval_subset <= 0)
                if self.step % c.checkpoint_every == 0 or final or self.checkpoint_due:
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
    def checkpoint_due(self) -> bool:
        """`checkpoint_minutes` of training since the last checkpoint (so a crash loses at most that)."""
        minutes = self.cfg.checkpoint_minutes
        return minutes > 0 and self.train_seconds - self._checkpoint_seconds >= 60.0 * minutes

    @property
    def out_of_time(self) -> bool:
        return self.cfg.max_train_seconds > 0 and self.train_seconds >= self.cfg.max_train_seconds

    # ------------------------------------------------------------------------------------------
    # evaluation

    def eval_indices(self, full: bool, split: str = "test") -> list[int]:
        """The frames a `split` evaluation renders ("test": the test split, or the training
        images when there is none; "val": the val split), all of them or `eval_subset`."""
        held = self.data.val_indices if split == "val" else (self.data.test_indices or self.data.train_indices)
        if full or self.cfg.eval_subset <= 0 or self.cfg.eval_subset >= len(held):
            return list(held)
        stride = len(held) / self.cfg.eval_subset
        return [held[int(k * stride)] for k in range(self.cfg.eval_subset)]

    def scored_splits(self) -> list[str]:
        """The held-out splits an evaluation scores apart: test, and val where the data has one."""
        return ["test", "val"] if self.data.val_indices else ["test"]

    @torch.no_grad()
    def evaluate(self, full: bool = True, save_renders: bool | None = None) -> dict:
        """Metrics on the test split under "eval" (the headline), on the val split under
        "eval_val" where the data has one (D-NeRF ships both; they can disagree). Under the run
        folder's lock (it writes metrics.jsonl and renders/), which training already holds."""
        with run_lock(self.run_dir):
            return self._evaluate(full, save_renders)

    def _evaluate(self, full: bool, save_renders: bool | None) -> dict:
        save = self.cfg.save_renders if save_renders is None else save_renders
        result = {"step": self.step, "train_seconds": round(self.train_seconds, 3)}
        for split in self.scored_splits():
            result["eval" if split == "test" else f"eval_{split}"] = self._evaluate_split(split, full, save)
        result.update(self.model_stats())
        self.log(result)
        return result

    def _evaluate_split(self, split: str, full: bool, save: bool) -> dict:
        psnrs, ssims, lpipss = [], [], []
        lpips_net = lpips_model(self.device)  # None without the weights: LPIPS is then null
        out_dir = self.run_dir / "renders" / f"step_{self.step}"
        if split != "test":
            out_dir = out_dir / split  # frame names repeat across splits (r_000.png)
        t0 = time.perf_counter()
        indices = self.eval_indices(full, split)
        names = render_names([self.data.frames[i].name for i in indices])
        # PNG encoding (~50 ms an image) overlaps the next image's render and metrics
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="splat-renders") as writer:
            writes = []
            for index, name in zip(indices, names):
                gt, mask = self.ground_truth(index, self.eval_background)
                image = self.render_eval(index, self.eval_background).clamp(0, 1)
                psnrs.append(losses.psnr(image, gt, mask))
                ssims.append(float(losses.ssim(image, gt, mask)))
                lpipss.append(None if lpips_net is None else lpips_net.distance(image, gt, mask))
                if save:
                    side_by_side = torch.cat([gt, image], dim=1).cpu()
                    writes.append(writer.submit(write_image, out_dir / f"{name}.png", side_by_side))
            for w in writes:
                w.result()  # a failed write (e.g. a full disk) surfaces here
        return {
            "psnr": sum(psnrs) / len(psnrs),
            "ssim": sum(ssims) / len(ssims),
            "lpips": None if None in lpipss else sum(lpipss) / len(lpipss),  # AlexNet LPIPS
            "num_images": len(psnrs),
            "split": split if split != "test" or self.data.test_indices else "train",
            "full": bool(full),
            "seconds": round(time.perf_counter() - t0, 3),
        }

    # ------------------------------------------------------------------------------------------
    # run folder

    def log(self, record: dict) -> None:
        path = self.run_dir / "metrics.jsonl"
        line = json.dumps(record) + "\n"
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with open(open_in_place(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "a") as f:  # a link is refused
                f.write(line)
        except OSError as e:
            raise (write_error(path, e, len(line)) or e) from None

    def _truncate_metrics(self, step: int) -> None:
        """Drop log records after `step` (a resumed run logs those steps again)."""
        path = self.run_dir / "metrics.jsonl"
        if not path.is_file():
            return
        keep = []
        with open(open_in_place(path, os.O_RDONLY), errors="replace") as f:  # not through a planted link
            text = f.read()
        for line in text.splitlines():
            try:
                if json.loads(line).get("step", 0) > step:
                    continue
            except (json.JSONDecodeError, AttributeError, TypeError):
                continue  # a line cut short by a kill
            keep.append(line + "\n")
        with atomic_path(path) as tmp:
            tmp.write_text("".join(keep))

    def _write_config(self) -> None:
        info = {
            "splat_version": splat.__version__,
            "data": self.data_path,
            "format": self.data.format,
            "dataset": self.data.summary(),
            "normalization": self.data.normalization.to_dict(),
            "config": self.cfg.to_json(),
        }
        text = json.dumps(info, indent=2) + "\n"
        with atomic_path(self.run_dir / "config.json", len(text)) as tmp:
            tmp.write_text(text)

    def save_checkpoint(self) -> Path:
        """Write the state atomically. On a full disk the partial file is removed and the checkpoints
        older than the newest one make room for a second try; if that fails too, the newest previous
        checkpoint is kept and DiskFullError says how much space was needed."""
        path = self.run_dir / "checkpoints" / f"step_{self.step:07d}.pt"
        state = self.state_dict()

        def write():
            with atomic_path(path, size_hint=tensor_bytes(state)) as tmp, open(tmp, "wb") as f:
                torch.save(state, f)  # through a Python file, so a full disk surfaces as its OSError

        try:
            write()
        except DiskFullError:
            older = [p for p in checkpoint_paths(self.run_dir) if p != path][:-1]
            if not older:
                raise
            for old in older:
                old.unlink(missing_ok=True)
            write()
        self._checkpoint_seconds = self.train_seconds
        for old in checkpoint_paths(self.run_dir)[: -self.cfg.keep_checkpoints]:
            if old.is_dir():  # a distributed run's step folder (the run resumed in one process)
                shutil.rmtree(old)
            else:
                old.unlink(missing_ok=True)
        return path


def render_names(names: list[str]) -> list[str]:
    """File names (no extension) for the renders of frames named `names`: each frame's stem, or,
    where stems repeat (a/img.png and b/img.png, img.png and img.jpg), its whole name with every
    character but letters, digits, '-' and '_' replaced by '_' (and its position where even those
    repeat), so that no render overwrites another."""
    import re
    from collections import Counter

    stems = [Path(n).stem for n in names]
    repeated = Counter(stems)
    out = [s if repeated[s] == 1 else re.sub(r"[^A-Za-z0-9_-]", "_", n) for s, n in zip(stems, names)]
    repeated = Counter(out)
    return [f"{o}-{k}" if repeated[o] > 1 else o for k, o in enumerate(out)]


def tensor_bytes(obj) -> int:
    """Bytes of the tensors in a nested state (about the size of its checkpoint file)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0
