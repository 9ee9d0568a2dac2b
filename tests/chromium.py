"""Headless Chromium over the DevTools protocol (`websockets`, a viser dependency), for the
viewer's browser tests and bench/viewer_client.py. CHROMIUM is None where Debian's chromium is
not installed."""

from __future__ import annotations

import base64
import io
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import imageio.v3 as iio
import numpy as np

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def wait_for_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers; fail early if `proc` (the server) exits meanwhile."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{proc.args[0]} exited: {proc.stderr.read() if proc.stderr else ''}") from None
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Chromium:
    """Headless Chromium over the DevTools protocol."""

    def __init__(self, tmp: Path):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--use-angle=swiftshader",
                "--enable-unsafe-swiftshader",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
                f"--user-data-dir={tmp / 'profile'}",
                f"--remote-debugging-port={self.port}",
                "--window-size=960,640",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_http(f"http://127.0.0.1:{self.port}/json/version", 30, self.proc)

    def open(self, url: str):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?{url}", method="PUT")
        target = json.loads(urllib.request.urlopen(req, timeout=10).read())
        return Page(target)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Page:
    def __init__(self, target: dict):
        from websockets.sync.client import connect

        self.id = target["id"]
        self.ws = connect(target["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=10)
        self.n = 0
        self.replies: dict[int, dict] = {}

    def call(self, method: str, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        return self.reply(self.n, timeout=30).get("result", {})

    def reply(self, call_id: int, timeout: float) -> dict:
        """The answer to call `call_id`; answers to other calls that arrive meanwhile are kept."""
        deadline = time.monotonic() + timeout
        while call_id not in self.replies:
            msg = json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))
            if "id" in msg:
                self.replies[msg["id"]] = msg
        return self.replies.pop(call_id)

    def evaluate(self, expression: str, timeout: float = 60):
        """The value of a JavaScript expression (promises awaited)."""
        result = self.call(
            "Runtime.evaluate",
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
            timeout=int(timeout * 1000),
        )
        return result.get("result", {}).get("value")

    def mouse(self, kind: str, x: float, y: float, buttons: int = 1) -> None:
        """A mouse event at (x, y) CSS pixels: kind mousePressed / mouseMoved / mouseReleased."""
        self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", buttons=buttons, clickCount=1)

    def screenshot(self) -> np.ndarray:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        return iio.imread(io.BytesIO(base64.b64decode(data)))[..., :3]

    def close(self):
        try:
            self.call("Page.close")
        except Exception:  # noqa: BLE001
            pass
        self.ws.close()
