"""The viewer's server renderer: splat's rasterizer with all SH bands. While the camera moves,
frames at reduced resolution; once it rests, one at full resolution (progressive scenes refine in
steps). Frames travel as JPEG background images. Neural fields always use this renderer, as do
the depth and alpha modes. A mixin of `splat.viewer.app.Viewer` (its scene, lock and counters)."""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from splat.camera import Camera, quat_to_rotmat

from .client_gui import Settings, camera_pose
from .client_state import REST_SECONDS, _ClientState
from .colormap import colorize_depth


class ServerRenderer:
    """Exact frames rendered here (a Viewer: its `scene`, `lock`, `frames_rendered`, `last_frame_ms`)."""

    def _levels(self, settings: Settings) -> list[float]:
        """Resolution factors: moving quality, then (progressive scenes) half, then full."""
        moving = settings.moving_scale
        if self.scene.progressive and moving < 0.5:
            return [moving, 0.5, 1.0]
        return [moving, 1.0]

    def _camera_of(self, client, settings: Settings, factor: float) -> Camera | None:
        """The client's camera at `factor` of its canvas, at most `settings.max_resolution`
        pixels on the long side (all client values clamped)."""
        pose = camera_pose(client.camera)
        if pose is None:
            return None
        wxyz, position, fov, W, H = pose
        scale = min(1.0, settings.max_resolution / max(W, H)) * factor
        w, h = max(16, int(W * scale)), max(16, int(H * scale))
        fy = 0.5 * h / math.tan(fov / 2)
        c2w = np.eye(4)
        c2w[:3, :3] = quat_to_rotmat(wxyz)
        c2w[:3, 3] = position
        return Camera(w, h, fy, fy, w / 2, h / 2, np.linalg.inv(c2w))

    def _render(self, cam: Camera, settings: Settings | None = None) -> np.ndarray:
        settings = Settings() if settings is None else settings
        mode = settings.mode
        bg = np.asarray(settings.background, dtype=np.float32)
        with self.lock:
            scene = self.scene
            t = settings.time if scene.is_dynamic else None
            out = scene.render(cam, outputs=(mode,) if mode != "depth" else ("depth", "alpha"), background=bg, time=t)
        if mode == "rgb":
            img = out["rgb"]
        elif mode == "alpha":
            img = out["alpha"].expand(-1, -1, 3)
        else:
            img = torch.from_numpy(
                colorize_depth(out["depth"][..., 0].cpu().numpy(), out["alpha"][..., 0].cpu().numpy(), bg)
            )
        return img.cpu().numpy() if torch.is_tensor(img) else img

    def _serve_frame(self, state: _ClientState, settings: Settings) -> bool:
        """One server-rendered frame for `state` if it needs one; True when one was sent."""
        if state.splats_handle is not None and state.splats_handle.visible:
            state.splats_handle.visible = False
        levels = self._levels(settings)
        moving = time.monotonic() - state.moved_at < REST_SECONDS
        if moving and state.level >= 0:
            return False  # this pose is already on screen at moving quality
        if not moving and state.level == len(levels) - 1:
            return False  # at rest and already sharp
        level = 0 if moving else max(state.level + 1, 1)
        moved_at = state.moved_at
        cam = self._camera_of(state.client, settings, levels[level])
        if cam is None:
            return False
        t0 = time.perf_counter()
        image = self._render(cam, settings)
        self.last_frame_ms = 1000 * (time.perf_counter() - t0)
        if not state.alive:
            return False
        state.client.scene.set_background_image(
            (np.clip(image, 0, 1) * 255).astype(np.uint8), format="jpeg", jpeg_quality=settings.jpeg_quality
        )
        state.backdrop = "frame"
        state.rendered_at = time.monotonic()
        if state.moved_at == moved_at:  # the camera did not move meanwhile
            state.level = level
        self.frames_rendered += 1
        return True
