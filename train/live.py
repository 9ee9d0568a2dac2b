"""What a live viewer (`splat train --viewer`) may use of a training run, instead of the trainer:
the lock the training steps run under, the step count, a pause switch and the current model as a
`Scene` (in the training frame, over the live parameters)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from splat.scene_protocol import Scene

    from .config import TrainConfig


class Training(Protocol):
    """What LiveRun reads of a trainer (train/base.py's BaseTrainer is one)."""

    step: int
    cfg: TrainConfig

    def scene(self) -> Scene: ...


class LiveRun:
    def __init__(self, trainer: Training):
        self._trainer = trainer
        self.lock = threading.Lock()  # held during each training step; hold it to read the model
        self.paused = False  # the run loop's hook waits while set (splat/runner.py)

    @property
    def step(self) -> int:
        return self._trainer.step

    @property
    def total_steps(self) -> int:
        return self._trainer.cfg.steps

    def toggle_pause(self) -> bool:
        """Pause or resume; returns whether the run is now paused."""
        self.paused = not self.paused
        return self.paused

    def scene(self) -> Scene:
        """The current model (read it under `lock`)."""
        return self._trainer.scene()
