"""`splat view`: a viser web viewer that renders on the server with splat's rasterizer.

Each connected browser gets its own render loop state: while its camera moves, frames are
rendered at a reduced resolution (interactive on a CPU); once the camera rests, one frame at full
resolution follows. Scenes that render slowly (neural fields, `scene.progressive`) refine in steps
instead: half resolution, then full. Frames travel as JPEG background images. A browser that
disconnects (even in the middle of a frame) only ends its own loop.

The same viewer shows a training run live (`splat train --viewer`): the trainer's parameters are
read under a lock, and nothing renders while no browser is connected, so training is not slowed.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from pathlib import Path

import numpy as np
import torch

from splat.camera import Camera, quat_to_rotmat, rotmat_to_quat
from splat.io_utils import write_image

from .colormap import colorize_depth

MOVING_SCALE = 0.35  # resolution factor while the camera moves
REST_SECONDS = 0.25  # camera unchanged this long -> render at full resolution


@dataclasses.dataclass
class _ClientState:
    client: object
    moved_at: float = 0.0
    rendered_at: float = -1.0
    level: int = -1  # finest quality level shown since the camera last moved (-1: none)
    alive: bool = True


class Viewer:
    """Serve `source` (a GaussianScene, or a callable returning one, e.g. a training run's current
    state) at http://host:port."""

    def __init__(self, source, host: str = "127.0.0.1", port: int = 8080, title: str = "splat", trainer=None):
        import viser

        self._source = source
        self.trainer = trainer
        self.lock = threading.Lock()  # guards the scene while the trainer edits it
        self.server = viser.ViserServer(host=host, port=port, verbose=False)
        self.server.gui.configure_theme(dark_mode=False)
        self.host, self.port = host, port
        self._clients: dict[int, _ClientState] = {}
        self._clients_lock = threading.Lock()
        self._stop = threading.Event()
        self.frames_rendered = 0
        self.last_frame_ms = 0.0
        self.paused = False
        scene = self.scene
        self._build_gui(title, scene)
        self._set_initial_view(scene)
        self._frustums = []
        self.server.on_client_connect(self._on_connect)
        self.server.on_client_disconnect(self._on_disconnect)
        self._thread = threading.Thread(target=self._render_loop, name="splat-viewer", daemon=True)
        self._thread.start()

    @property
    def scene(self):
        return self._source() if callable(self._source) else self._source

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ---- GUI ------------------------------------------------------------------------------------

    def _build_gui(self, title: str, scene) -> None:
        gui = self.server.gui
        gui.add_markdown(f"**{title}**")
        self.stats = gui.add_markdown("")
        with gui.add_folder("Render"):
            self.mode = gui.add_dropdown("Mode", ("rgb", "depth", "alpha"), initial_value="rgb")
            self.max_res = gui.add_slider("Max resolution", min=128, max=2048, step=32, initial_value=1024)
            self.moving_scale = gui.add_slider("Moving quality", min=0.1, max=1.0, step=0.05, initial_value=MOVING_SCALE)
            self.jpeg_quality = gui.add_slider("JPEG quality", min=30, max=100, step=5, initial_value=80)
            self.background = gui.add_rgb("Background", initial_value=(255, 255, 255))
            self.fov = gui.add_slider("FOV (deg)", min=10.0, max=120.0, step=1.0, initial_value=50.0)
            self.show_cameras = gui.add_checkbox("Training cameras", initial_value=False)
            self.screenshot = gui.add_button("Screenshot")
        if scene.is_dynamic:
            with gui.add_folder("Time"):
                self.time = gui.add_slider("t", min=0.0, max=1.0, step=0.005, initial_value=0.0)
                self.playing = gui.add_checkbox("Play", initial_value=False)
        else:
            self.time = self.playing = None
        if self.trainer is not None:
            with gui.add_folder("Training"):
                self.pause_button = gui.add_button("Pause")
                self.pause_button.on_click(lambda _: self._toggle_pause())
        for handle in (self.mode, self.max_res, self.background, self.jpeg_quality):
            handle.on_update(lambda _: self._mark_all_dirty())
        self.fov.on_update(lambda _: self._apply_fov())
        self.show_cameras.on_update(lambda _: self._update_frustums())
        self.screenshot.on_click(self._on_screenshot)

    def _set_initial_view(self, scene) -> None:
        """Where a new browser starts (and "reset view" returns): the first training camera when
        the scene has them, else a view from the front and above its bounds (z up)."""
        init = self.server.initial_camera
        cams = scene.cameras
        if cams:
            c2w = cams[0].c2w
            lo, hi = scene.bounds()
            distance = max(float(np.linalg.norm((lo + hi) / 2 - c2w[:3, 3])), 1e-3)
            up = -c2w[:3, 1]  # OpenCV y points down
            position, look_at = c2w[:3, 3], c2w[:3, 3] + distance * c2w[:3, 2]
            self.fov.value = float(np.clip(math.degrees(2 * math.atan(0.5 * cams[0].height / cams[0].fy)), 10, 120))
        else:
            lo, hi = scene.bounds()
            look_at = (lo + hi) / 2
            radius = max(float(np.linalg.norm(hi - lo)), 1e-3)
            position = look_at + np.array([0.0, -1.2 * radius, 0.6 * radius])
            up = np.array([0.0, 0.0, 1.0])
        self.server.scene.set_up_direction(tuple(float(x) for x in up))
        init.position = tuple(float(x) for x in position)
        init.look_at = tuple(float(x) for x in look_at)
        init.up = tuple(float(x) for x in up)
        init.fov = math.radians(self.fov.value)

    def _toggle_pause(self) -> None:
        self.paused = not self.paused
        self.pause_button.label = "Resume" if self.paused else "Pause"

    def _apply_fov(self) -> None:
        for state in self._states():
            try:
                state.client.camera.fov = math.radians(self.fov.value)
            except Exception:  # noqa: BLE001 - a client may vanish at any time
                pass
        self._mark_all_dirty()

    def _update_frustums(self) -> None:
        for f in self._frustums:
            f.remove()
        self._frustums = []
        if not self.show_cameras.value:
            return
        cams = self.scene.cameras
        if not cams:
            return
        extent = np.linalg.norm(np.ptp(np.stack([c.center for c in cams]), axis=0)) + 1e-6
        for k, cam in enumerate(cams):
            c2w = cam.c2w
            handle = self.server.scene.add_camera_frustum(
                f"/cameras/{k}", fov=2 * math.atan(0.5 * cam.height / cam.fy), aspect=cam.width / cam.height,
                scale=0.03 * extent, wxyz=rotmat_to_quat(c2w[:3, :3]), position=c2w[:3, 3], color=(60, 120, 220),
            )  # fmt: skip
            handle.on_click(lambda event, cam=cam: self._jump_to(event.client, cam))
            self._frustums.append(handle)

    def _jump_to(self, client, cam: Camera) -> None:
        c2w = cam.c2w
        with client.atomic():
            client.camera.wxyz = rotmat_to_quat(c2w[:3, :3])
            client.camera.position = c2w[:3, 3]
            client.camera.fov = 2 * math.atan(0.5 * cam.height / cam.fy)

    def _on_screenshot(self, event) -> None:
        client = event.client
        cam = self._camera_of(client, 1.0)
        if cam is None:
            return
        image = self._render(cam)
        path = Path("screenshots") / f"splat-{time.strftime('%Y%m%d-%H%M%S')}.png"
        write_image(path, image)
        client.send_file_download(path.name, path.read_bytes())
        client.add_notification(title="Screenshot", body=f"saved {path}", auto_close_seconds=3.0)

    # ---- clients --------------------------------------------------------------------------------

    def _states(self) -> list[_ClientState]:
        with self._clients_lock:
            return list(self._clients.values())

    def _mark_all_dirty(self) -> None:
        for s in self._states():
            s.moved_at = time.monotonic()
            s.level = -1

    def _on_connect(self, client) -> None:
        state = _ClientState(client, moved_at=time.monotonic())
        with self._clients_lock:
            self._clients[client.client_id] = state
        try:
            client.camera.fov = math.radians(self.fov.value)
        except Exception:  # noqa: BLE001 - the client may already be gone
            pass

        @client.camera.on_update
        def _(_camera) -> None:
            state.moved_at = time.monotonic()
            state.level = -1

    def _on_disconnect(self, client) -> None:
        with self._clients_lock:
            state = self._clients.pop(client.client_id, None)
        if state is not None:
            state.alive = False

    def _levels(self) -> list[float]:
        """Resolution factors: moving quality, then (progressive scenes) half, then full."""
        moving = self.moving_scale.value
        if getattr(self.scene, "progressive", False) and moving < 0.5:
            return [moving, 0.5, 1.0]
        return [moving, 1.0]

    def _camera_of(self, client, factor: float) -> Camera | None:
        cam = client.camera
        W, H = int(cam.image_width or 0), int(cam.image_height or 0)
        if W < 2 or H < 2:
            return None
        scale = min(1.0, self.max_res.value / max(W, H))
        scale *= factor
        w, h = max(16, int(W * scale)), max(16, int(H * scale))
        fy = 0.5 * h / math.tan(cam.fov / 2)
        c2w = np.eye(4)
        c2w[:3, :3] = quat_to_rotmat(cam.wxyz)
        c2w[:3, 3] = cam.position
        return Camera(w, h, fy, fy, w / 2, h / 2, np.linalg.inv(c2w))

    # ---- rendering ------------------------------------------------------------------------------

    def _render(self, cam: Camera) -> np.ndarray:
        mode = self.mode.value
        bg = np.asarray(self.background.value, dtype=np.float32) / 255.0
        t = self.time.value if self.time is not None else None
        with self.lock:
            out = self.scene.render(cam, outputs=(mode,) if mode != "depth" else ("depth", "alpha"), background=bg, time=t)
        if mode == "rgb":
            img = out["rgb"]
        elif mode == "alpha":
            img = out["alpha"].expand(-1, -1, 3)
        else:
            img = torch.from_numpy(colorize_depth(out["depth"][..., 0].cpu().numpy(), out["alpha"][..., 0].cpu().numpy(), bg))
        return img.cpu().numpy() if torch.is_tensor(img) else img

    def _render_loop(self) -> None:
        while not self._stop.is_set():
            busy = False
            if self.playing is not None and self.playing.value:
                self.time.value = (self.time.value + 0.01) % 1.0
                self._mark_all_dirty()
            levels = self._levels()
            for state in self._states():
                moving = time.monotonic() - state.moved_at < REST_SECONDS
                if moving and state.level >= 0:
                    continue  # this pose is already on screen at moving quality
                if not moving and state.level == len(levels) - 1:
                    continue  # at rest and already sharp
                level = 0 if moving else max(state.level + 1, 1)
                moved_at = state.moved_at
                try:
                    cam = self._camera_of(state.client, levels[level])
                    if cam is None:
                        continue
                    t0 = time.perf_counter()
                    image = self._render(cam)
                    self.last_frame_ms = 1000 * (time.perf_counter() - t0)
                    if not state.alive:
                        continue
                    state.client.scene.set_background_image((np.clip(image, 0, 1) * 255).astype(np.uint8),
                                                            format="jpeg", jpeg_quality=int(self.jpeg_quality.value))  # fmt: skip
                    state.rendered_at = time.monotonic()
                    if state.moved_at == moved_at:  # the camera did not move meanwhile
                        state.level = level
                    self.frames_rendered += 1
                    busy = True
                except Exception:  # noqa: BLE001 - e.g. the browser went away mid-frame
                    state.alive = state.alive and state.client.client_id in self._clients
            self._update_stats()
            if not busy:
                time.sleep(0.01)

    def _update_stats(self) -> None:
        scene = self.scene
        text = f"{scene.summary} · last frame {self.last_frame_ms:.0f} ms"
        if self.trainer is not None:
            text += f"  \nstep {self.trainer.step:,} / {self.trainer.cfg.steps:,}" + (" (paused)" if self.paused else "")
        if text != getattr(self, "_stats_text", None):
            self._stats_text = text
            self.stats.content = text

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
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
