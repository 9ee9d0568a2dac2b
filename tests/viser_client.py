"""A scripted viser client for the viewer's service tests: a websocket that speaks viser's wire
protocol (msgpack messages tagged with their class name) the way the web client does, and can
also send what a hostile client might (any Origin, any value)."""

from __future__ import annotations

import threading
import time

import msgspec
import viser
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


class ScriptedClient:
    def __init__(self, port: int, origin: str | None = "own", path: str = "/"):
        if origin == "own":
            origin = f"http://127.0.0.1:{port}"
        self.ws = connect(
            f"ws://127.0.0.1:{port}{path}",
            origin=origin,
            subprotocols=[f"viser-v{viser.__version__}"],
            max_size=None,
            open_timeout=20,
        )
        self.received = 0
        self.messages: list[dict] = []  # every message received, decoded ({"type": ..., fields})
        self.close_code: int | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            while True:
                self.messages += decode(self.ws.recv())
                self.received += 1
        except ConnectionClosed as e:
            self.close_code = e.rcvd.code if e.rcvd is not None else None

    def send(self, type_name: str, **fields) -> None:
        self.ws.send(msgspec.msgpack.encode({"type": type_name, **fields}))

    def send_camera(self, width: int = 320, height: int = 240, fov: float = 0.9, position=(0.0, -3.0, 1.5)) -> None:
        self.send(
            "ViewerCameraMessage",
            wxyz=(0.0, 0.0, 0.6, 0.8),
            position=tuple(position),
            fov=fov,
            near=0.01,
            far=1000.0,
            image_height=height,
            image_width=width,
            look_at=(0.0, 0.0, 0.0),
            up_direction=(0.0, 0.0, 1.0),
        )

    def set_gui(self, handle, value) -> None:
        """What the browser sends when the user moves a control (here: any value at all)."""
        self.send("GuiUpdateMessage", uuid=handle._impl.uuid, updates={"value": value})

    def closed(self, timeout: float = 10.0) -> bool:
        self._reader.join(timeout)
        return not self._reader.is_alive()

    def close(self) -> None:
        self.ws.close()


def decode(frame: bytes) -> list[dict]:
    """viser's wire format: inner length (8 bytes), compressed length (8), zstd of a msgpack
    {"messages": [...]}, then raw array buffers (not decoded here)."""
    import zstandard

    inner, size = int.from_bytes(frame[:8], "little"), int.from_bytes(frame[8:16], "little")
    payload = zstandard.ZstdDecompressor().decompress(frame[16 : 16 + size], max_output_size=inner)
    return list(msgspec.msgpack.decode(payload)["messages"])


def wait_until(condition, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
