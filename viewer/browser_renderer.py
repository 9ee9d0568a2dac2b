"""The viewer's browser renderer: the Gaussians are sent once (viser's `add_gaussian_splats`: 32
bytes a splat) and the browser sorts and draws them at its own frame rate; the server is idle
while the camera moves. viser has no spherical harmonics, so colours are evaluated here for the
current viewpoint and re-sent when the camera settles somewhere new (or has swung more than
RECOLOUR_DEGREES while moving, at most once a second). Scenes larger than the budget send the
`max_splats` Gaussians that contribute most (viewer/client_splats.py). Live training and 4D
playback re-send at a bounded rate. A mixin of `splat.viewer.app.Viewer` (its scene, lock, live
run and counters)."""

from __future__ import annotations

import math
import time

import numpy as np

from .client_gui import Settings, camera_pose
from .client_splats import BrowserSplats, browser_splats
from .client_state import REST_SECONDS, _ClientState

RECOLOUR_DEGREES = 20.0  # a moving camera whose view direction turned this far gets new colours...
RECOLOUR_SECONDS = 1.0  # ...at most this often
LIVE_PUSH_SECONDS = 2.0  # live training: re-send the Gaussians at most this often
PLAY_PUSH_SECONDS = 0.25  # 4D playback / time slider: re-send the sliced Gaussians at most this often


class BrowserRenderer:
    """Gaussians the browser draws (a Viewer: its `scene`, `lock`, `live`, `max_splats`, `_splats_cache`,
    `splat_pushes`)."""

    def _scene_key(self, settings: Settings):
        """What the browser's Gaussians depend on: the training step and the time slice."""
        step = self.live.step if self.live is not None else None
        return step, (round(settings.time, 4) if settings.time is not None else None)

    def _browser_splats(self, key, settings: Settings) -> BrowserSplats:
        if key not in self._splats_cache:
            with self.lock:
                splats = browser_splats(self.scene, self.max_splats, time=settings.time)
            if len(self._splats_cache) >= 4:
                self._splats_cache.pop(next(iter(self._splats_cache)))
            self._splats_cache[key] = splats
        return self._splats_cache[key]

    def _serve_splats(self, state: _ClientState, settings: Settings) -> bool:
        """Send or update the Gaussians the browser draws; True when something was sent."""
        now = time.monotonic()
        client = state.client
        sent = False
        bg = ("solid", tuple(settings.background_u8.tolist()))
        if state.backdrop != bg:
            client.scene.set_background_image(np.broadcast_to(settings.background_u8, (4, 4, 3)).copy(), format="png")
            state.backdrop = bg
        key = self._scene_key(settings)
        if state.splats_key != key:
            # bounded rates: live training LIVE_PUSH_SECONDS, 4D time changes PLAY_PUSH_SECONDS
            wait = (
                LIVE_PUSH_SECONDS
                if state.splats_key is not None and key[0] != state.splats_key[0]
                else PLAY_PUSH_SECONDS
            )
            if state.splats_handle is None or now - state.pushed_at >= wait:
                splats = self._browser_splats(key, settings)
                pose = camera_pose(client.camera)
                campos = pose[1] if pose is not None else None
                colours = splats.colors(campos)
                if state.splats_handle is None:
                    state.splats_handle = client.scene.add_gaussian_splats(
                        "/splats", splats.centers, splats.covariances, colours, splats.opacities
                    )
                else:
                    state.splats_handle.set_gaussians(splats.centers, splats.covariances, colours, splats.opacities)
                state.splats, state.splats_key, state.pushed_at = splats, key, now
                state.colours_from, state.colours_at = campos, now
                self.splat_pushes += 1
                sent = True
        if not state.splats_handle.visible:
            state.splats_handle.visible = True
        if state.splats is not None and state.splats.sh_degree > 0 and self._needs_colours(state, now):
            pose = camera_pose(client.camera)
            if pose is not None:
                state.splats_handle.rgbs = state.splats.colors(pose[1])
                state.colours_from, state.colours_at = pose[1], now
                self.splat_pushes += 1
                sent = True
        return sent

    def _needs_colours(self, state: _ClientState, now: float) -> bool:
        """View-baked colours are stale: the camera rests somewhere else than where they were
        baked, or is moving and has turned more than RECOLOUR_DEGREES (at most once a second)."""
        pose = camera_pose(state.client.camera)
        if pose is None:
            return False
        position = pose[1]
        if state.colours_from is None:
            return True
        if np.allclose(position, state.colours_from, atol=1e-6):
            return False
        resting = now - state.moved_at >= REST_SECONDS
        if resting:
            return True
        if now - state.colours_at < RECOLOUR_SECONDS:
            return False
        a, b = state.colours_from - state.splats.centre, position - state.splats.centre
        cos = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
        return math.degrees(math.acos(min(max(cos, -1.0), 1.0))) > RECOLOUR_DEGREES
