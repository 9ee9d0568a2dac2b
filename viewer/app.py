"""`splat view`: a viser web viewer, drawing in the browser or rendering exactly on the server.

Two renderers, chosen per browser in its GUI ("Renderer"):
- **browser** (the default when the scene fits `max_splats`; viewer/browser_renderer.py): the
  browser draws the Gaussians it was sent, with colours baked here for its viewpoint.
- **server** (viewer/server_renderer.py): exact frames from splat's rasterizer, sent as JPEG
  images. Neural fields always use this renderer, as do the depth and alpha modes.

Every browser has its own controls and state (viewer/client_gui.py clamps what it sends); one that
disconnects, even mid-frame, only ends its own loop; any other failure while serving a browser is a
bug: its traceback goes to the server's terminal (once per distinct error) and the browser is told.
Connections must come from the viewer's own page and carry `token` when one is set; viser's public
share tunnel is off unless `share` asks for it, which then requires a token (viewer/security.py).
Screenshots are bounded per client and in all (viewer/screenshots.py).

The same viewer shows a training run live (`splat train --viewer`) through its `LiveRun` handle
(train/live.py): the live parameters are read under the run's step lock, and nothing is rendered or
sent while no browser is connected.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from splat.errors import InputError

from .browser_renderer import (  # the rates re-exported
    LIVE_PUSH_SECONDS,  # noqa: F401
    PLAY_PUSH_SECONDS,  # noqa: F401
    RECOLOUR_DEGREES,  # noqa: F401
    BrowserRenderer,
)
from .cameras import set_initial_view, show_frustums
from .client_gui import RENDERERS, ClientGui, Settings
from .client_splats import DEFAULT_MAX_SPLATS, BrowserSplats
from .client_state import REST_SECONDS, _ClientState  # noqa: F401 - REST_SECONDS re-exported
from .screenshots import Screenshots
from .security import (
    ConnectionGuard,
    ViewerAddressError,
    disable_sharing,
    new_token,
    open_share,
    resolve,
    share_url,
    viewer_url,
)
from .server_renderer import ServerRenderer

if TYPE_CHECKING:
    from splat.scene_protocol import Scene
    from splat.train.live import LiveRun

PLAY_SPEED = 0.1  # 4D playback: scene time per second (a 10 s loop)
RETRY_SECONDS = 2.0  # a browser whose frame failed waits this long before the next try


class Viewer(ServerRenderer, BrowserRenderer):
    """Serve `source` (a `Scene`, or a callable returning one, e.g. `LiveRun.scene`) at `url`.
    `live`: the training run shown (its step, pause switch and step lock); `max_splats`: the
    browser renderer's budget; `renderer`: "auto" (browser when the scene fits the budget),
    "browser" or "server"; `token`: required from every connection when given; `share`: publish
    the viewer through viser's public tunnel (a token is made when none is given)."""

    def __init__(
        self,
        source: Scene | Callable[[], Scene],
        host: str = "127.0.0.1",
        port: int = 8080,
        title: str = "splat",
        live: LiveRun | None = None,
        max_splats: int = DEFAULT_MAX_SPLATS,
        renderer: str = "auto",
        token: str | None = None,
        share: bool = False,
    ):
        import viser

        if max_splats < 1:
            raise InputError(f"--max-splats {max_splats}: expected a positive number of Gaussians")
        if renderer not in ("auto", *RENDERERS):
            raise InputError(f"--renderer {renderer}: expected auto, browser or server")
        if token is not None and not token:
            raise InputError("--token: expected a non-empty token")
        if share and token is None:
            token = new_token()  # the tunnel lets in clients without an Origin header: all need the token
        resolve(host, port)
        self._source = source
        self.live = live
        self.title = title
        self.max_splats = int(max_splats)
        self.lock = live.lock if live is not None else threading.Lock()  # guards the scene while training edits it
        self.server = viser.ViserServer(host=host, port=port, verbose=False)
        self.guard = ConnectionGuard(host, port, token)
        self.guard.install(self.server)
        disable_sharing(self.server, keep_server_side=share)  # no client can open the public tunnel
        self.server.gui.configure_theme(dark_mode=False, show_share_button=False)  # and no Share button
        self.host, self.port, self.token = host, self.server.get_port(), token
        if port != 0 and self.port != port:  # taken between our check and viser's bind
            self.server.stop()
            raise ViewerAddressError(
                f"--port {port}: already in use on {host} (pick another --port, or --port 0 for a free one)"
            )
        self._clients: dict[int, _ClientState] = {}
        self._clients_lock = threading.Lock()
        self._splats_cache: dict[object, BrowserSplats] = {}
        self._stop = threading.Event()
        self._reported: set[str] = set()  # errors whose traceback was printed
        self.screenshots = Screenshots(self._screenshot_image)
        self.frames_rendered = 0
        self.splat_pushes = 0
        self.last_frame_ms = 0.0
        scene = self.scene
        self.splat_capable = scene.splats is not None  # Gaussians (not a neural field)
        self.renderers = RENDERERS if self.splat_capable else ("server",)
        if renderer == "auto":
            renderer = "browser" if self.splat_capable and scene.num_primitives <= self.max_splats else "server"
        if renderer not in self.renderers:
            raise InputError(f"--renderer {renderer}: {scene.summary} can only be rendered on the server")
        self.default_renderer = renderer
        self._initial_fov = set_initial_view(self.server, scene)
        self.server.on_client_connect(self._on_connect)
        self.server.on_client_disconnect(self._on_disconnect)
        self._thread = threading.Thread(target=self._render_loop, name="splat-viewer", daemon=True)
        self._thread.start()
        self.public_url = None
        if share:
            try:
                self.public_url = share_url(open_share(self.server, self.guard), self.token)
            except BaseException:
                self.close()
                raise
            print(f"splat viewer: shared publicly at {self.public_url} (anyone with this URL can view)", flush=True)

    @property
    def scene(self) -> Scene:
        return self._source() if callable(self._source) else self._source

    @property
    def url(self) -> str:
        return viewer_url(self.host, self.port, self.token)

    # ---- setup ----------------------------------------------------------------------------------

    def _on_connect(self, client) -> None:
        gui = ClientGui(
            client,
            self.title,
            renderers=self.renderers,
            renderer=self.default_renderer,
            dynamic=self.scene.is_dynamic,
            training=self.live is not None,
            fov_deg=self._initial_fov,
        )
        state = _ClientState(client, gui, moved_at=time.monotonic())
        dirty = lambda _: self._mark_dirty(state)  # noqa: E731

        for handle in (gui.renderer, gui.mode, gui.max_res, gui.background, gui.jpeg_quality, gui.moving_scale):
            handle.on_update(dirty)
        if gui.time is not None:
            gui.time.on_update(dirty)
        gui.mode.on_update(lambda _: self._mode_changed(state))
        gui.renderer.on_update(lambda _: gui.show_controls_of(gui.settings().renderer))
        gui.fov.on_update(lambda _: self._apply_fov(state))
        gui.show_cameras.on_update(lambda _: show_frustums(state, self.scene.cameras))
        gui.screenshot.on_click(lambda event: self.screenshots.request(state))
        if gui.pause_button is not None:
            gui.pause_button.on_click(lambda _: self._toggle_pause())
        self._apply_fov(state)

        @client.camera.on_update
        def _(_camera) -> None:
            state.moved_at = time.monotonic()
            state.level = -1

        with self._clients_lock:
            self._clients[client.client_id] = state

    def _on_disconnect(self, client) -> None:
        with self._clients_lock:
            state = self._clients.pop(client.client_id, None)
        if state is not None:
            state.alive = False
        self.screenshots.forget(client.client_id)

    def _states(self) -> list[_ClientState]:
        with self._clients_lock:
            return list(self._clients.values())

    @staticmethod
    def _mark_dirty(state: _ClientState) -> None:
        state.moved_at = time.monotonic()
        state.level = -1

    def _mode_changed(self, state: _ClientState) -> None:
        if state.gui.mode.value != "rgb" and state.gui.renderer.value != "server":
            state.gui.renderer.value = "server"  # depth and alpha come from the exact renderer

    def _toggle_pause(self) -> None:
        paused = self.live.toggle_pause()
        for s in self._states():
            if s.gui is not None and s.gui.pause_button is not None:
                s.gui.pause_button.label = "Resume" if paused else "Pause"

    def _apply_fov(self, state: _ClientState) -> None:
        try:
            state.client.camera.fov = state.gui.fov_radians()
        except Exception:  # noqa: BLE001 - a client may vanish at any time
            pass
        self._mark_dirty(state)

    def _screenshot_image(self, state: _ClientState) -> np.ndarray | None:
        settings = state.gui.settings()
        cam = self._camera_of(state.client, settings, 1.0)
        return None if cam is None else self._render(cam, settings)

    # ---- loop -----------------------------------------------------------------------------------

    def _advance_time(self, state: _ClientState, settings: Settings) -> Settings:
        if not settings.playing or state.gui.time is None:
            state.played_at = None
            return settings
        now = time.monotonic()
        if state.played_at is not None:
            state.gui.time.value = (settings.time + PLAY_SPEED * (now - state.played_at)) % 1.0
            self._mark_dirty(state)
        state.played_at = now
        return state.gui.settings()

    def _render_loop(self) -> None:
        while not self._stop.is_set():
            busy = False
            for state in self._states():
                if time.monotonic() - state.failed_at < RETRY_SECONDS:
                    continue
                try:
                    settings = self._advance_time(state, state.gui.settings())
                    if settings.renderer == "browser" and settings.mode == "rgb" and self.splat_capable:
                        busy |= self._serve_splats(state, settings)
                    else:
                        busy |= self._serve_frame(state, settings)
                    self._update_stats(state, settings)
                except Exception as e:  # noqa: BLE001 - a browser gone mid-frame, or a bug (reported)
                    self._serving_failed(state, e)
            if not busy:
                time.sleep(0.02)

    def _serving_failed(self, state: _ClientState, error: Exception) -> None:
        """A browser that went away mid-frame just ends its loop. Anything else is a bug in splat:
        its traceback is printed once, the browser is told, and its loop retries a little later."""
        cid = getattr(state.client, "client_id", None)
        with self._clients_lock:
            gone = self._clients.get(cid) is not state or cid not in self.server.get_clients()
        if gone or not state.alive:
            state.alive = False
            return
        state.failed_at = time.monotonic()
        what = f"{error.__class__.__name__}: {' '.join(str(error).split())[:200]}"
        if what not in self._reported:
            self._reported.add(what)
            print(
                "splat viewer: internal error while serving a browser (a bug in splat; please report it):",
                file=sys.stderr,
            )
            traceback.print_exception(error)
        text = f"**render failed** ({what}): an internal error, see the server's terminal"
        if state.stats_text != text and state.gui is not None:
            state.stats_text = text
            state.gui.stats.content = text

    def _update_stats(self, state: _ClientState, settings: Settings) -> None:
        scene = self.scene
        if settings.renderer == "browser" and state.splats is not None:
            s = state.splats
            shown = f"all {s.count:,}" if s.count == s.total else f"{s.count:,} of {s.total:,}"
            text = f"{scene.summary} · browser draws {shown} (budget {self.max_splats:,})"
        else:
            text = f"{scene.summary} · server render, last frame {self.last_frame_ms:.0f} ms"
        if self.live is not None:
            text += f"  \nstep {self.live.step:,} / {self.live.total_steps:,}" + (
                " (paused)" if self.live.paused else ""
            )
        if text != state.stats_text:
            state.stats_text = text
            state.gui.stats.content = text

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.screenshots.close()
        self.server.stop()

    def wait(self) -> None:
        """Serve until Ctrl-C."""
        try:
            while not self._stop.is_set():
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.close()
