"""The viser web viewer: `splat view` and `splat train --viewer` (a training run's `LiveRun`,
train/live.py)."""

from __future__ import annotations

DEFAULT_MAX_SPLATS = 1_000_000  # the browser renderer's budget: ~32 MB on the socket, fine for a laptop GPU
