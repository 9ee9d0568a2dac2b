"""The web viewer: its render path, and a real browser (headless Chromium) showing the scene.

The browser tests need Debian's `chromium` (`make test` installs it when it can); without it they
skip with a message. Chromium is driven over the DevTools protocol with `websockets` (a viser
dependency), so no extra test package is needed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from chromium import CHROMIUM, Chromium, free_port, wait_for_http
from test_render_api import still_life_ply

import splat
from splat.camera import Camera

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------
# render path (no browser)


@pytest.fixture(scope="module")
def viewer(tmp_path_factory):
    from splat.viewer.app import Viewer

    ply = still_life_ply(tmp_path_factory.mktemp("scene") / "s.ply")
    v = Viewer(splat.load(ply), port=free_port())
    yield v
    v.close()


def test_viewer_render_modes(viewer):
    from splat.viewer.client_gui import Settings

    cam = Camera.look_at((0, -3.2, 1.6), (0, 0, 0.25), width=80, height=60, fov_x=55)
    for mode in ("rgb", "depth", "alpha"):
        img = viewer._render(cam, Settings(mode=mode))
        assert img.shape == (60, 80, 3) and np.isfinite(img).all() and 0 <= img.min() and img.max() <= 1
        assert img.std() > 0.05, mode


def test_viewer_time_slider_for_dynamic_scenes():
    """A 4D scene gets a time slider; frames at different times differ (a splat moving in x)."""
    from splat.scene import GaussianScene
    from splat.viewer.app import Viewer

    n = 400
    g = torch.Generator().manual_seed(0)
    means = torch.cat([torch.rand(n, 3, generator=g) - 0.5, torch.rand(n, 1, generator=g)], 1)
    ident = torch.tensor([1.0, 0, 0, 0]).expand(n, 4).contiguous()
    splats = {
        "means": means,
        "scales": torch.log(torch.tensor([0.05, 0.05, 0.05, 0.15])).expand(n, 4).contiguous(),
        "quats": ident,
        "quats_right": ident.clone(),
        "opacities": torch.full((n,), 2.0),
        "sh0": torch.randn(n, 1, 3, generator=g),
        "shN": torch.zeros(n, 0, 3),
    }
    scene = GaussianScene(splats)
    assert scene.is_dynamic
    from splat.viewer.client_gui import Settings
    from splat.viewer.client_splats import browser_splats

    v = Viewer(scene, port=free_port())
    try:
        cam = Camera.look_at((0, -3.0, 1.0), (0, 0, 0), width=48, height=36, fov_x=50)
        a = v._render(cam, Settings(time=0.0))
        b = v._render(cam, Settings(time=1.0))
        assert np.abs(a - b).max() > 0.1
    finally:
        v.close()
    # the browser gets the Gaussians sliced at the slider's time: centres move, opacities fade
    early, late = browser_splats(scene, time=0.0), browser_splats(scene, time=1.0)
    assert early.total == late.total == n
    assert early.count < n and late.count < n  # splats faded out at that time are not sent
    assert early.count != late.count or not np.allclose(early.centers, late.centers)


class _VanishingClient:
    """A browser that disconnected: every access to its camera fails."""

    client_id = 12345

    @property
    def camera(self):
        raise RuntimeError("client disconnected")


def test_render_loop_survives_a_vanished_client(viewer):
    from splat.viewer.app import _ClientState

    with viewer._clients_lock:
        viewer._clients[_VanishingClient.client_id] = _ClientState(_VanishingClient(), moved_at=time.monotonic())
    time.sleep(0.5)
    assert viewer._thread.is_alive()
    with viewer._clients_lock:
        viewer._clients.pop(_VanishingClient.client_id, None)


# ----------------------------------------------------------------------------------------------
# real browser


def shows_the_scene(img: np.ndarray) -> bool:
    """The still life on white: saturated colours (stripes, torus, cube) and a dark checkerboard."""
    f = img.astype(np.float32) / 255
    saturation = f.max(-1) - f.min(-1)
    colourful = (saturation > 0.4).mean()
    dark = (f.max(-1) < 0.4).mean()
    return colourful > 0.01 and dark > 0.02


def wait_for_scene(page, timeout: float = 90.0) -> np.ndarray:
    deadline = time.time() + timeout
    img = None
    while time.time() < deadline:
        img = page.screenshot()
        if shows_the_scene(img):
            return img
        time.sleep(1.0)
    return img


@pytest.fixture
def served_scene(tmp_path):
    ply = still_life_ply(tmp_path / "s.ply")
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "splat.cli", "view", str(ply), "--port", str(port), "--renderer", "server"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    wait_for_http(f"http://127.0.0.1:{port}/", 60, proc)
    yield f"http://127.0.0.1:{port}/", proc
    proc.terminate()
    _, err = proc.communicate(timeout=20)
    assert "Traceback" not in err, err


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it as root)")
def test_browser_shows_the_scene_and_survives_a_disconnect(served_scene, tmp_path):
    url, server = served_scene
    browser = Chromium(tmp_path)
    try:
        first = browser.open(url)
        img = wait_for_scene(first)
        iio.imwrite(tmp_path / "first.png", img)
        assert shows_the_scene(img), f"the page does not show the scene (screenshot: {tmp_path / 'first.png'})"
        second = browser.open(url)
        img2 = wait_for_scene(second)
        assert shows_the_scene(img2), "a second browser does not get frames"
        # drop the first browser while it is being served, then make the second one re-render
        first.ws.close()
        first.close()
        second.call("Emulation.setDeviceMetricsOverride", width=720, height=480, deviceScaleFactor=1, mobile=False)
        time.sleep(3)
        img3 = wait_for_scene(second)
        assert img3.shape[:2] == (480, 720) and shows_the_scene(img3)
        assert server.poll() is None, "the server died after a browser disconnected"
        second.close()
    finally:
        browser.close()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it as root)")
def test_browser_renderer_draws_the_gaussians_in_the_page(tmp_path):
    """The default for a scene within the budget: the page shows the scene while the server
    renders no frame at all (the browser sorts and draws the Gaussians it was sent)."""
    from splat.viewer.app import Viewer

    v = Viewer(splat.load(still_life_ply(tmp_path / "s.ply")), port=free_port())
    assert v.default_renderer == "browser"
    browser = Chromium(tmp_path)
    try:
        page = browser.open(v.url)
        img = wait_for_scene(page)
        iio.imwrite(tmp_path / "browser.png", img)
        assert shows_the_scene(img), f"the page does not show the scene (screenshot: {tmp_path / 'browser.png'})"
        assert v.frames_rendered == 0 and v.splat_pushes >= 1
        (state,) = v._states()
        assert state.splats.count == state.splats.total == v.scene.num_gaussians
        assert "browser draws all" in state.gui.stats.content
        page.close()
    finally:
        browser.close()
        v.close()


def two_moment_scene() -> splat.GaussianScene:
    """A 4D scene whose red Gaussians live around t = 0 and blue ones around t = 1."""
    from splat.gaussians import rgb_to_sh
    from splat.scene import GaussianScene

    n = 600
    g = torch.Generator().manual_seed(3)
    xyz = torch.randn(n, 3, generator=g) * 0.25
    late = torch.arange(n) >= n // 2
    ident = torch.tensor([1.0, 0, 0, 0]).expand(n, 4).contiguous()
    colors = torch.where(late[:, None], torch.tensor([0.1, 0.2, 0.9]), torch.tensor([0.9, 0.1, 0.1]))
    return GaussianScene(
        {
            "means": torch.cat([xyz, late.float()[:, None]], 1),
            "scales": torch.log(torch.tensor([0.06, 0.06, 0.06, 0.1])).expand(n, 4).contiguous(),
            "quats": ident,
            "quats_right": ident.clone(),
            "opacities": torch.full((n,), 3.0),
            "sh0": rgb_to_sh(colors)[:, None, :],
            "shN": torch.zeros(n, 0, 3),
        }
    )


def red_and_blue(img: np.ndarray) -> tuple[float, float]:
    """Fractions of red and of blue pixels where the scene is drawn (left of the GUI panel, whose
    slider and buttons are blue, and above the axes gizmo)."""
    f = img[150:480, 80:600].astype(np.float32) / 255
    return float(((f[..., 0] > 0.6) & (f[..., 2] < 0.4)).mean()), float(((f[..., 2] > 0.6) & (f[..., 0] < 0.4)).mean())


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it as root)")
def test_browser_time_slider_moves_a_4d_scene(tmp_path):
    """The browser renderer draws a 4D scene at the slider's time: red at t = 0, blue at t = 1."""
    from splat.viewer.app import Viewer

    v = Viewer(two_moment_scene(), port=free_port())
    assert v.default_renderer == "browser"
    browser = Chromium(tmp_path)
    try:
        page = browser.open(v.url)
        shots = {}
        for t, colour in ((0.0, 0), (1.0, 1)):
            deadline = time.time() + 90
            while time.time() < deadline:
                states = v._states()
                if states and states[0].gui.time is not None:
                    states[0].gui.time.value = t
                img = page.screenshot()
                if red_and_blue(img)[colour] > 0.01 and red_and_blue(img)[1 - colour] < 0.001:
                    break
                time.sleep(0.5)
            shots[t] = img
            iio.imwrite(tmp_path / f"t{t:g}.png", img)
        red0, blue0 = red_and_blue(shots[0.0])
        red1, blue1 = red_and_blue(shots[1.0])
        assert red0 > 0.01 and blue0 < 0.001, f"t = 0 should show the red Gaussians ({tmp_path / 't0.png'})"
        assert blue1 > 0.01 and red1 < 0.001, f"t = 1 should show the blue Gaussians ({tmp_path / 't1.png'})"
        assert np.abs(shots[0.0].astype(int) - shots[1.0].astype(int)).mean() > 1.0
        assert v.frames_rendered == 0  # the browser drew both
        page.close()
    finally:
        browser.close()
        v.close()
