"""The viewer against hostile or careless clients (issue 29): viser's public share tunnel cannot be
opened by a client and needs a token when asked for, a burst of screenshot clicks is bounded, and a
failure while serving a browser is reported as the bug it is (traceback, browser told), not
swallowed. Clients here are scripted websockets (tests/viser_client.py)."""

from __future__ import annotations

import threading
import time

import pytest
import test_viewer_service
from test_viewer_service import connected, open_viewer
from viser_client import ScriptedClient, wait_until

scene_ply = test_viewer_service.scene_ply  # the same module-scoped fixture


@pytest.fixture
def tunnels(monkeypatch):
    """viser's tunnel class replaced by one that records being made and fails at once (nothing
    here may reach the network)."""
    import viser._viser

    made = []

    class FakeTunnel:
        def __init__(self, domain, port):
            made.append((domain, port))

        def on_disconnect(self, callback):
            pass

        def on_connect(self, callback):
            pass

        def get_status(self):
            return "failed"

        def get_url(self):
            return None

        def close(self):
            pass

    monkeypatch.setattr(viser._viser, "ViserTunnel", FakeTunnel)
    return made


# ----------------------------------------------------------------------------------------------
# 2. the share tunnel


def test_a_client_cannot_open_the_share_tunnel(scene_ply, tunnels):
    v = open_viewer(scene_ply, renderer="server")
    try:
        client = ScriptedClient(v.port)
        connected(v, client)
        client.send("ShareUrlRequest")
        client.send("ShareUrlDisconnect")
        wait_until(lambda: any(m["type"] == "ThemeConfigurationMessage" for m in client.messages), what="the theme")
        time.sleep(1.0)  # viser hands the request to a pool thread
        assert tunnels == [], "a client's share request opened viser's public tunnel"
        themes = [m for m in client.messages if m["type"] == "ThemeConfigurationMessage"]
        assert themes and not any(m["show_share_button"] for m in themes), "the Share button is shown"
        with pytest.raises(RuntimeError, match="sharing is off"):
            v.server.request_share_url()
        client.close()
    finally:
        v.close()


def test_share_asks_for_the_tunnel_and_requires_a_token(scene_ply, monkeypatch):
    import viser

    asked = []

    def fake_share(self, verbose=True):
        asked.append(self.get_port())
        return "https://abcd.share.viser.studio"

    from splat.cli import build_parser

    assert build_parser().parse_args(["view", "s.ply", "--share"]).share
    monkeypatch.setattr(viser.ViserServer, "request_share_url", fake_share)
    v = open_viewer(scene_ply, renderer="server", share=True)
    try:
        assert asked == [v.port] and v.token, "--share opened no tunnel or made no token"
        assert v.public_url.startswith("https://abcd.share.viser.studio/?websocket=wss")
        assert v.token in v.public_url and v.token in v.url
        tunnel = "https://abcd.share.viser.studio"
        for origin, path in ((None, "/"), (tunnel, "/"), (tunnel, "/?token=wrong")):  # the relay passes any of these
            c = ScriptedClient(v.port, origin=origin, path=path)
            assert c.closed() and c.close_code == 1008 and c.received == 0, (origin, path)
        ok = ScriptedClient(v.port, origin=tunnel, path=f"/?token={v.token}")
        connected(v, ok)
        ok.send("ShareUrlDisconnect")  # no client may close (or reopen) the tunnel either
        time.sleep(0.5)
        assert asked == [v.port]
        ok.close()
    finally:
        v.close()


# ----------------------------------------------------------------------------------------------
# 6. screenshots


def test_a_screenshot_burst_is_bounded(scene_ply, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    v = open_viewer(scene_ply, renderer="server")
    try:
        clients = [ScriptedClient(v.port) for _ in range(2)]
        states = [connected(v, c) for c in clients]
        downloads = {id(s): [] for s in states}
        for s in states:
            s.client.send_file_download = lambda name, data, s=s: downloads[id(s)].append((name, data))
        for _ in range(10):
            for c, s in zip(clients, states):
                c.set_gui(s.gui.screenshot, True)
        wait_until(lambda: all(downloads.values()), what="the screenshots")
        time.sleep(1.0)  # anything else the burst queued would arrive now
        saved = sorted((tmp_path / "screenshots").iterdir())
        assert [len(d) for d in downloads.values()] == [1, 1], "one click in a burst should take a screenshot"
        assert len(saved) == 2 and len({p.name for p in saved}) == 2, saved
        for d in downloads.values():  # each browser got the file saved for it, not another's
            ((name, data),) = d
            assert (tmp_path / "screenshots" / name).read_bytes() == data
        for c in clients:
            c.close()
    finally:
        v.close()


def test_screenshots_queue_is_bounded(scene_ply, tmp_path, monkeypatch):
    from splat.viewer.screenshots import QUEUE_SIZE, Screenshots

    monkeypatch.chdir(tmp_path)
    release = threading.Event()

    def slow_render(state):
        release.wait(10)
        return None

    class Client:
        def __init__(self, cid):
            self.client_id = cid
            self.notes = []

        def add_notification(self, title, body, auto_close_seconds):
            self.notes.append(body)

    class State:
        def __init__(self, cid):
            self.client = Client(cid)

    shots = Screenshots(slow_render)
    try:
        states = [State(k) for k in range(QUEUE_SIZE + 4)]
        accepted = []
        for s in states:
            accepted.append(shots.request(s))
            time.sleep(0.05)  # the worker takes the first one off the queue
        assert sum(accepted) == QUEUE_SIZE + 1, accepted  # one rendering, QUEUE_SIZE waiting
        assert all("busy" in s.client.notes[0] for s, a in zip(states, accepted) if not a)
        assert not shots.request(states[0]) and "still being rendered" in states[0].client.notes[-1]
    finally:
        release.set()
        shots.close()


# ----------------------------------------------------------------------------------------------
# 7. a failure while serving a browser is a bug: reported, not swallowed


def test_a_render_failure_is_reported_not_swallowed(scene_ply, capfd):
    v = open_viewer(scene_ply, renderer="server")
    try:

        def broken(*args, **kwargs):
            raise ValueError("an internal invariant broke")

        v.scene.render = broken
        client = ScriptedClient(v.port)
        state = connected(v, client)
        wait_until(lambda: "render failed" in state.stats_text, what="the browser to be told")
        assert "ValueError" in state.gui.stats.content
        time.sleep(2 * 2.0)  # retries print no second traceback for the same error
        err = capfd.readouterr().err
        assert err.count("Traceback") == 1 and "an internal invariant broke" in err and "internal error" in err, err
        assert state.alive
        client.close()
    finally:
        v.close()
