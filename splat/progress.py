"""Progress bars with an ETA for long stages (rich on a terminal, a plain line every 10 s otherwise)."""

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
