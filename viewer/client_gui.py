"""Each browser's own controls (viser's per-client GUI): one client's changes never reach another.

Every value a client sends is untrusted: a client can post any number for a slider, not only the
ones its slider offers. `Settings` reads the handles through clamps, so a crafted message gets the
nearest allowed value (a 4096-pixel request gets MAX_RESOLUTION).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

MODES = ("rgb", "depth", "alpha")
RENDERERS = ("browser", "server")  # the browser draws the Gaussians / the server renders exact frames
MIN_RESOLUTION, MAX_RESOLUTION = 128, 2048
MIN_MOVING, MAX_MOVING = 0.1, 1.0
MIN_JPEG, MAX_JPEG = 30, 100
MIN_FOV, MAX_FOV = 10.0, 120.0  # degrees, the slider's range and the camera's
MAX_VIEWPORT = 8192  # a client's reported canvas size is only used for its aspect ratio
MOVING_SCALE = 0.35  # resolution factor while the camera moves


def clamp(value, lo: float, hi: float, default: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return default
    return default if not math.isfinite(v) else min(max(v, lo), hi)


@dataclasses.dataclass(frozen=True)
class Settings:
    """One client's render settings, clamped."""

    renderer: str = "browser"
    mode: str = "rgb"
    max_resolution: int = 1024
    moving_scale: float = MOVING_SCALE
    jpeg_quality: int = 80
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    time: float | None = None
    playing: bool = False

    @property
    def background_u8(self) -> np.ndarray:
        return np.round(np.asarray(self.background) * 255).astype(np.uint8)


class ClientGui:
    """The controls of one browser, built in its own GUI (`client.gui`)."""

    def __init__(
        self,
        client,
        title: str,
        *,
        renderers: tuple[str, ...],
        renderer: str,
        dynamic: bool,
        training: bool,
        fov_deg: float,
    ):
        gui = client.gui
        gui.configure_theme(dark_mode=False, show_share_button=False)  # sharing: splat view --share
        gui.add_markdown(f"**{title}**")
        self.stats = gui.add_markdown("")
        with gui.add_folder("Render"):
            self.renderer = gui.add_dropdown(
                "Renderer",
                renderers,
                initial_value=renderer,
                hint="browser: your GPU draws the Gaussians; server: exact frames from splat",
            )
            self.mode = gui.add_dropdown("Mode", MODES, initial_value="rgb", hint="depth and alpha: server renderer")
            self.max_res = gui.add_slider(
                "Max resolution", min=MIN_RESOLUTION, max=MAX_RESOLUTION, step=32, initial_value=1024
            )
            self.moving_scale = gui.add_slider(
                "Moving quality", min=MIN_MOVING, max=MAX_MOVING, step=0.05, initial_value=MOVING_SCALE
            )
            self.jpeg_quality = gui.add_slider("JPEG quality", min=MIN_JPEG, max=MAX_JPEG, step=5, initial_value=80)
            self.background = gui.add_rgb("Background", initial_value=(255, 255, 255))
            self.fov = gui.add_slider("FOV (deg)", min=MIN_FOV, max=MAX_FOV, step=1.0, initial_value=fov_deg)
            self.show_cameras = gui.add_checkbox("Training cameras", initial_value=False)
            self.screenshot = gui.add_button("Screenshot")
        self.time = self.playing = None
        if dynamic:
            with gui.add_folder("Time"):
                self.time = gui.add_slider("t", min=0.0, max=1.0, step=0.005, initial_value=0.0)
                self.playing = gui.add_checkbox("Play", initial_value=False)
        self.show_controls_of(renderer)
        self.pause_button = None
        if training:
            with gui.add_folder("Training"):
                self.pause_button = gui.add_button("Pause")

    def show_controls_of(self, renderer: str) -> None:
        """The server renderer's frame controls are only shown while it is the renderer."""
        for handle in (self.max_res, self.moving_scale, self.jpeg_quality):
            handle.visible = renderer == "server"

    def settings(self) -> Settings:
        renderer = self.renderer.value if self.renderer.value in self.renderer.options else self.renderer.options[0]
        mode = self.mode.value if self.mode.value in MODES else "rgb"
        try:
            bg = tuple(clamp(c, 0, 255, 255) / 255 for c in self.background.value)[:3]
        except TypeError:
            bg = (1.0, 1.0, 1.0)
        if len(bg) != 3:
            bg = (1.0, 1.0, 1.0)
        return Settings(
            renderer=renderer,
            mode=mode,
            max_resolution=int(clamp(self.max_res.value, MIN_RESOLUTION, MAX_RESOLUTION, 1024)),
            moving_scale=clamp(self.moving_scale.value, MIN_MOVING, MAX_MOVING, MOVING_SCALE),
            jpeg_quality=int(clamp(self.jpeg_quality.value, MIN_JPEG, MAX_JPEG, 80)),
            background=bg,
            time=clamp(self.time.value, 0.0, 1.0, 0.0) if self.time is not None else None,
            playing=bool(self.playing.value) if self.playing is not None else False,
        )

    def fov_radians(self) -> float:
        return math.radians(clamp(self.fov.value, MIN_FOV, MAX_FOV, 50.0))


def camera_pose(camera) -> tuple[np.ndarray, np.ndarray, float, int, int] | None:
    """A client's reported camera, checked: (wxyz, position, vertical fov, width, height), or None
    when it is unusable (not finite, a zero quaternion, a canvas smaller than 2 pixels)."""
    wxyz = np.asarray(camera.wxyz, dtype=np.float64).reshape(-1)
    position = np.asarray(camera.position, dtype=np.float64).reshape(-1)
    if wxyz.shape != (4,) or position.shape != (3,) or not (np.isfinite(wxyz).all() and np.isfinite(position).all()):
        return None
    norm = np.linalg.norm(wxyz)
    if norm < 1e-6:
        return None
    fov = clamp(camera.fov, math.radians(MIN_FOV), math.radians(MAX_FOV), math.radians(50.0))
    width = int(clamp(camera.image_width or 0, 0, MAX_VIEWPORT, 0))
    height = int(clamp(camera.image_height or 0, 0, MAX_VIEWPORT, 0))
    if width < 2 or height < 2:
        return None
    return wxyz / norm, position, fov, width, height
