"""What the viewer keeps for each connected browser (viewer/app.py), shared by its two renderers."""

from __future__ import annotations

import dataclasses

import numpy as np

from .client_gui import ClientGui
from .client_splats import BrowserSplats

REST_SECONDS = 0.25  # camera unchanged this long -> at rest (sharp server frame, colours re-baked)


@dataclasses.dataclass
class _ClientState:
    client: object
    gui: ClientGui | None = None
    moved_at: float = 0.0
    rendered_at: float = -1.0
    level: int = -1  # finest server quality level shown since the camera last moved (-1: none)
    alive: bool = True
    frustums: list = dataclasses.field(default_factory=list)
    # browser renderer
    splats_handle: object = None
    splats: BrowserSplats | None = None
    splats_key: object = None  # which scene state / time the browser holds
    pushed_at: float = -1e9
    colours_from: np.ndarray | None = None  # camera position the colours were baked for
    colours_at: float = -1e9
    backdrop: object = None  # what background the browser shows: ("solid", rgb) or "frame"
    played_at: float | None = None
    stats_text: str = ""
    failed_at: float = -1e9  # when serving this browser last raised (a bug, reported)
