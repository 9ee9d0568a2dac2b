"""Viewer screenshots: a click renders that browser's view at full resolution, saves it under
`screenshots/` with a name no other screenshot has, and sends the same bytes to that browser.

Bounded, since any connected client can click: one pending screenshot per client, at most one every
MIN_INTERVAL seconds per client, at most QUEUE_SIZE waiting in all, rendered one at a time by one
thread (a burst of clicks cannot pile full-resolution renders onto the scene lock that live
training shares). A click beyond these bounds is answered with a notification, not queued.
"""

from __future__ import annotations

import itertools
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

from splat.errors import is_user_error
from splat.io_utils import atomic_path, encode_image

MIN_INTERVAL = 2.0  # seconds between one client's screenshots
QUEUE_SIZE = 4  # screenshots waiting, all clients together
FOLDER = Path("screenshots")


class Screenshots:
    """`render(state)`: the client's view as an (H, W, 3) float image, or None when it has none yet."""

    def __init__(self, render: Callable[[object], np.ndarray | None], folder: str | os.PathLike = FOLDER):
        self._render = render
        self.folder = Path(folder)
        self._queue: queue.Queue = queue.Queue(QUEUE_SIZE)
        self._last: dict[int, float] = {}  # client id -> when its last accepted screenshot was asked for
        self._pending: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.saved: list[Path] = []
        self.refused = 0
        self._thread = threading.Thread(target=self._run, name="splat-screenshots", daemon=True)
        self._thread.start()

    def request(self, state) -> bool:
        """Queue a screenshot of `state`'s view; False (and the browser is told why) when refused."""
        cid = state.client.client_id
        now = time.monotonic()
        with self._lock:
            wait = self._last.get(cid, -MIN_INTERVAL) + MIN_INTERVAL - now
            if cid in self._pending:
                reason = "the previous one is still being rendered"
            elif wait > 0:
                reason = f"at most one every {MIN_INTERVAL:g} s; try again in {wait:.1f} s"
            else:
                try:
                    self._queue.put_nowait(state)
                except queue.Full:
                    reason = "the viewer is busy with other screenshots; try again shortly"
                else:
                    self._pending.add(cid)
                    self._last[cid] = now
                    return True
            self.refused += 1
        _notify(state, "Screenshot not taken", reason)
        return False

    def forget(self, client_id: int) -> None:
        with self._lock:
            self._last.pop(client_id, None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                state = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._take(state)
            except Exception as e:  # noqa: BLE001 - reported, and the thread keeps serving
                if is_user_error(e):  # e.g. a full disk or an unwritable working folder
                    _notify(state, "Screenshot not saved", str(e))
                else:
                    print("splat viewer: internal error while taking a screenshot (a bug in splat):", file=sys.stderr)
                    traceback.print_exc()
                    _notify(state, "Screenshot failed", f"internal error ({e.__class__.__name__}); see the server log")
            finally:
                with self._lock:
                    self._pending.discard(state.client.client_id)

    def _take(self, state) -> None:
        image = self._render(state)
        if image is None:
            return
        data = encode_image(image, ".png")
        path = self._reserve_name()
        with atomic_path(path, len(data)) as tmp:
            tmp.write_bytes(data)
        self.saved.append(path)
        if getattr(state, "alive", True):
            state.client.send_file_download(path.name, data)  # the bytes just rendered, not the file re-read
            _notify(state, "Screenshot", f"saved {path}")

    def _reserve_name(self) -> Path:
        """A new file name in the folder, claimed by creating it (another viewer in the same folder,
        or a second within the same second, gets the next number)."""
        from splat.errors import write_error

        stamp = time.strftime("%Y%m%d-%H%M%S")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for n in itertools.count(1):
                path = self.folder / f"splat-{stamp}-{n}.png"
                try:
                    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
                except FileExistsError:
                    continue
                return path
        except OSError as e:
            raise (write_error(self.folder / "x.png", e) or e) from None
        raise AssertionError("unreachable")


def _notify(state, title: str, body: str) -> None:
    state.client.add_notification(title=title, body=body, auto_close_seconds=3.0)
