"""Progress bars with an ETA (rich on a terminal, a plain line every 10 s otherwise): for long
stages (`stage_bar`) and for training (`TrainProgress`), and the plan line a run starts with."""

from __future__ import annotations

import contextlib
import sys
import time


@contextlib.contextmanager
def stage_bar(name: str, total: int, unit: str = "", quiet: bool = False):
    """Yield `update(done, total)` for one stage; the bar closes (and says how long it took) on exit."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    live = console.is_terminal and not quiet
    t0 = time.perf_counter()
    last = [0.0, 0, max(total, 1)]  # last print time, done, total
    bar = task = None
    if live:
        bar = Progress(
            TextColumn(f"[bold]{name:<9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        task = bar.add_task(name, total=max(total, 1))
        bar.start()

    def update(done: int, new_total: int | None = None) -> None:
        last[1], last[2] = done, max(new_total or last[2], 1)
        if live:
            bar.update(task, completed=done, total=last[2])
        elif not quiet and (time.perf_counter() - last[0] > 10 or done >= last[2]):
            last[0] = time.perf_counter()
            elapsed = time.perf_counter() - t0
            eta = f", eta {elapsed * (last[2] - done) / done:.0f} s" if 0 < done < last[2] else ""
            print(f"{name}: {done}/{last[2]} {unit}{eta}", file=sys.stderr, flush=True)

    try:
        yield update
    finally:
        if live:
            bar.stop()
    if not quiet:
        print(f"{name}: {last[1]:,} {unit} in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)


class TrainProgress:
    """A rich progress bar with loss, PSNR, Gaussian count, steps/s and ETA (plain lines when the
    output is not a terminal). The bar shows the run's completed fraction (by steps, or by
    training time under a time budget), so its ETA holds for both."""

    UNITS = 1000

    def __init__(self, trainer, quiet: bool = False):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console(stderr=True)
        self.live = self.console.is_terminal and not quiet
        self.quiet = quiet
        self.total = trainer.cfg.steps
        self.t0 = time.perf_counter()
        self.start_step = trainer.step
        self.start_fraction = trainer.progress(trainer.step)
        self.last_print = 0.0
        if self.live:
            self.bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self.task = self.bar.add_task(
                "train", total=self.UNITS, completed=self.UNITS * self.start_fraction, stats=""
            )
            self.bar.start()

    def __call__(self, trainer, out) -> None:
        if self.quiet:
            return
        step = trainer.step
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        rate = (step - self.start_step) / elapsed
        fraction = trainer.progress(step)
        stats = (
            f"step {step:,}  loss {out['loss']:.4f}  psnr {out['psnr']:.2f}  {trainer.model_text()}  {rate:.2f} it/s"
        )
        if self.live:
            self.bar.update(self.task, completed=self.UNITS * fraction, stats=stats)
        elif time.perf_counter() - self.last_print > 10 or fraction >= 1.0:
            self.last_print = time.perf_counter()
            done = max(fraction - self.start_fraction, 1e-9)
            eta = elapsed * (1.0 - fraction) / done
            print(f"{stats}  {100 * fraction:.0f}%  eta {eta:.0f}s", flush=True)

    def close(self) -> None:
        if self.live:
            self.bar.stop()


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def eval_estimate(trainer) -> float:
    """Seconds for the final evaluation, roughly: measured on a 2-core CPU, 1.5 s per
    megapixel-image for Gaussians (SSIM, LPIPS and the PNG included; lego: 57 s for 200 images at
    400x400), 5 s an image for a field; CUDA 10x less."""
    cam = trainer.data.camera(trainer.data.train_indices[0])
    n = eval_count(trainer)
    per_image = 5.0 if trainer.cfg.model == "field" else 1.5 * cam.width * cam.height / 1e6 + 0.05
    return n * per_image / (10.0 if trainer.device.type == "cuda" else 1.0)


def eval_count(trainer) -> int:
    """Images the final evaluation renders: every scored split (test, and val where there is one)."""
    return sum(len(trainer.eval_indices(True, split)) for split in trainer.scored_splits())


MODEL_TEXT = {
    "3d": "3D Gaussians",
    "motion": "3D Gaussians moved by shared motions: frames carry a time",
    "4d": "4D Gaussians: frames carry a time",
    "field": "neural field (Instant-NGP hash grid)",
}


def plan_line(trainer) -> str:
    """One line on what will run: device, resolution, the model, preset, steps or time budget, and an ETA."""
    c = trainer.cfg
    cam = trainer.data.camera(trainer.data.train_indices[0])
    n_eval = eval_count(trainer)
    if c.max_train_seconds > 0:
        left = max(c.max_train_seconds - trainer.train_seconds, 0.0)
        # which limit comes first depends on this machine's speed: the time is an upper bound
        budget = f"{c.steps:,} steps or {duration(c.max_train_seconds)} of training, whichever comes first"
        eta = f"done within about {duration(left + eval_estimate(trainer))}, evaluation included"
    else:
        budget = f"{c.steps:,} steps"
        eta = "ETA from the progress bar after the first steps"
    return (
        f"plan: {trainer.device.type}, {cam.width}x{cam.height} images (downscale {c.downscale}), "
        f"{MODEL_TEXT.get(c.model, c.model)}, preset {c.preset}: "
        f"{budget}, evaluation on {n_eval} images at the end; {eta}"
    )
