"""`Scene`: what every renderable scene offers (`GaussianScene`, 3D and 4D, and `FieldScene`), to
users of `splat.load`, to the viewer and to the trainers' evaluation. Both scene modules import
this one, not each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from .camera import Camera
from .errors import InputError

OUTPUTS = ("rgb", "depth", "alpha")


@runtime_checkable
class Scene(Protocol):
    """A trained scene in one world frame (the dataset's original frame for loaded scenes, the
    normalised training frame for a live training run)."""

    cameras: list[Camera]  # the training cameras when known (the viewer's start view and frustums)
    source: str  # where it came from (a path, "training")
    progressive: bool  # slow to render: the viewer refines a still view in steps
    splats: dict[str, torch.Tensor] | None  # pre-activation Gaussians (splat/gaussians.py); None for a field

    @property
    def summary(self) -> str:
        """One line for people: what it is and how large."""
        ...

    @property
    def device(self) -> torch.device: ...

    @property
    def is_dynamic(self) -> bool:
        """Changes over time: `render` then takes `time` in `time_range`."""
        ...

    @property
    def time_range(self) -> tuple[float, float] | None:
        """(first, last) time of a dynamic scene, None for a static one."""
        ...

    @property
    def num_primitives(self) -> int:
        """Gaussians, or occupied occupancy-grid cells of a neural field."""
        ...

    @property
    def sh_degree(self) -> int | None:
        """Degree of the spherical harmonics that colour it (None: its colours are not SH)."""
        ...

    def bounds(self, quantile: float = 0.98) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) corners of an axis-aligned box around the content."""
        ...

    def to(self, device: str | torch.device) -> Scene: ...

    def render(
        self,
        cameras: Camera | Sequence[Camera],
        outputs: Sequence[str] = ("rgb",),
        background=(0.0, 0.0, 0.0),
        time: float | None = None,
        tile_size: int = 16,
    ) -> dict[str, torch.Tensor]:
        """Render one camera ((H, W, C) outputs) or a list of equally sized cameras ((B, H, W, C)):
        any of "rgb" (over `background`), "depth" (expected camera z, 0 where nothing is hit),
        "alpha". `time`: for dynamic scenes (default: the start)."""
        ...


def camera_batch(cameras: Camera | Sequence[Camera], outputs: Sequence[str]) -> tuple[bool, list[Camera]]:
    """Check a render call's outputs and cameras: (one camera given?, the cameras as a list)."""
    unknown = [o for o in outputs if o not in OUTPUTS]
    if unknown or not outputs:
        raise InputError(f"outputs: choose from {OUTPUTS}, got {tuple(outputs)}")
    single = isinstance(cameras, Camera)
    cams = [cameras] if single else list(cameras)
    if not cams:
        raise InputError("cameras: expected a Camera or a non-empty list of cameras")
    return single, cams
