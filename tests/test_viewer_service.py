"""The viewer as a network service (issue 15, item 3): who may connect, what a client may ask for,
and a bind address that is wrong or taken. Clients here are scripted websockets (tests/viser_client.py)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from chromium import free_port
from test_render_api import still_life_ply
from test_viewer import ROOT
from viser_client import ScriptedClient, wait_until

import splat
from splat.viewer.client_gui import MAX_FOV, MAX_JPEG, MAX_MOVING, MAX_RESOLUTION


@pytest.fixture(scope="module")
def scene_ply(tmp_path_factory):
    return still_life_ply(tmp_path_factory.mktemp("scene") / "s.ply")


def open_viewer(scene_ply, **kwargs):
    from splat.viewer.app import Viewer

    return Viewer(splat.load(scene_ply), port=free_port(), **kwargs)


@pytest.fixture(scope="module")
def viewer(scene_ply):
    v = open_viewer(scene_ply, renderer="server")
    yield v
    v.close()


def connected(viewer, client: ScriptedClient):
    """Introduce `client` (its first camera message) and return the viewer's state for it."""
    before = set(viewer._clients)
    client.send_camera()
    wait_until(lambda: set(viewer._clients) - before, what="the viewer to register the client")
    (cid,) = set(viewer._clients) - before
    return viewer._clients[cid]


def test_a_foreign_origin_is_refused_before_anything_is_sent(viewer):
    evil = ScriptedClient(viewer.port, origin="http://evil.example")
    assert evil.closed(), "a page on another site kept its websocket to the viewer"
    assert evil.close_code == 1008 and evil.received == 0
    own = ScriptedClient(viewer.port)  # the viewer's own page is served
    state = connected(viewer, own)
    wait_until(lambda: own.received > 0, what="messages to the viewer's own page")
    assert state.alive
    own.close()


def test_client_values_are_clamped(viewer):
    client = ScriptedClient(viewer.port)
    state = connected(viewer, client)
    client.send_camera(width=4096, height=3072, fov=3.1)  # a canvas beyond the slider, a 178-degree FOV
    for handle, value in (
        (state.gui.max_res, 4096),
        (state.gui.moving_scale, 50.0),
        (state.gui.jpeg_quality, 1000),
        (state.gui.fov, 500.0),
        (state.gui.mode, "../../etc"),
        (state.gui.renderer, "gpu-miner"),
    ):
        client.set_gui(handle, value)
    wait_until(
        lambda: (
            state.gui.max_res.value == 4096
            and state.gui.moving_scale.value == 50.0
            and state.gui.jpeg_quality.value == 1000
            and state.gui.fov.value == 500.0
            and state.client.camera.image_width == 4096
        ),
        what="the updates",
    )
    s = state.gui.settings()
    assert s.max_resolution == MAX_RESOLUTION and s.moving_scale == MAX_MOVING and s.jpeg_quality == MAX_JPEG
    assert s.mode == "rgb" and s.renderer in viewer.renderers
    assert state.gui.fov_radians() <= __import__("math").radians(MAX_FOV)
    cam = viewer._camera_of(state.client, s, 1.0)
    assert max(cam.width, cam.height) <= MAX_RESOLUTION, (cam.width, cam.height)
    assert cam.fy >= 0.5 * cam.height / __import__("math").tan(__import__("math").radians(MAX_FOV) / 2) - 1e-6
    client.close()


def test_each_client_has_its_own_settings(viewer):
    a, b = ScriptedClient(viewer.port), ScriptedClient(viewer.port)
    sa, sb = connected(viewer, a), connected(viewer, b)
    assert sa.gui is not sb.gui
    a.set_gui(sa.gui.mode, "depth")
    a.set_gui(sa.gui.max_res, 256)
    wait_until(lambda: sa.gui.settings().mode == "depth", what="client A's mode")
    assert sb.gui.settings().mode == "rgb" and sb.gui.settings().max_resolution == 1024
    a.close()
    b.close()


def test_token_is_required_when_set(scene_ply):
    v = open_viewer(scene_ply, token="s3cret")
    try:
        assert "s3cret" in v.url
        for path in ("/", "/?token=wrong"):
            c = ScriptedClient(v.port, path=path)
            assert c.closed() and c.close_code == 1008 and c.received == 0, path
        ok = ScriptedClient(v.port, path="/?token=s3cret")
        connected(v, ok)
        ok.close()
    finally:
        v.close()


def run_view(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "splat.cli", "view", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_error(proc, *words):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_a_busy_port_fails_naming_it(scene_ply):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert_one_line_error(run_view(str(scene_ply), "--port", str(port)), f"--port {port}", "in use")


def test_an_impossible_port_or_unknown_host_exits_2(scene_ply):
    assert_one_line_error(run_view(str(scene_ply), "--port", "99999"), "--port 99999")
    assert_one_line_error(run_view(str(scene_ply), "--host", "no-such-host.invalid"), "no-such-host.invalid")
