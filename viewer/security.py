"""The viewer as a network service: a bind address that is checked before viser starts, websocket
connections that must come from the viewer's own page (Origin) and, optionally, carry a token.

A web page on another site, open in the user's browser, can open a websocket to
ws://127.0.0.1:8080 (browsers do not apply the same-origin policy to websockets); it cannot forge
the Origin header, so connections whose Origin is not this server's own address are closed
before anything is sent. Clients without an Origin header are not browsers driven by a page (a
script run by the user) and are let through; `--token` covers them on non-loopback hosts.

The token travels in the websocket URL's query (`ws://host:port/?token=...`): viser's web client
keeps the query of the `websocket=` page parameter, so the printed URL carries it there.

viser can also publish the viewer through a public tunnel (its relay at share.viser.studio), and
any connected client may ask it to (its "share" message, the GUI's Share button). Sharing is off
unless `--share` asks for it: the button is hidden and the message has no handler, so the viewer
opens no connection to anything outside the machine. With `--share` the tunnel is opened once at
start and every connection must carry the token (one is made when none is given), since the
tunnel also lets in clients that send no Origin header.
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import secrets
import socket
import urllib.parse

from splat.errors import InputError

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
WILDCARD_HOSTS = ("", "0.0.0.0", "::")
POLICY_VIOLATION = 1008  # websocket close code


class ViewerAddressError(InputError):
    """A --host / --port the viewer cannot serve on (one-line message naming it)."""


class ShareError(InputError):
    """--share could not open viser's public tunnel (one-line message)."""


def resolve(host: str, port: int) -> list[str]:
    """Check a bind address before viser sees it (viser hangs on a bad port or an unknown host):
    the port in 0..65535, the host resolvable, the port free. Returns the host's addresses."""
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ViewerAddressError(f"--port {port}: expected a port number in 0..65535")
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        raise ViewerAddressError(
            f"--host {host}: cannot resolve this host name ({getattr(e, 'strerror', e)})"
        ) from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server does
        try:
            probe.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ViewerAddressError(
                    f"--port {port}: already in use on {host} (pick another --port, or --port 0 for a free one)"
                ) from None
            raise ViewerAddressError(f"--host {host} --port {port}: cannot listen there ({e.strerror})") from None
    return [info[4][0] for info in infos]


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine."""
    if host in WILDCARD_HOSTS:
        return False
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)}
    except (socket.gaierror, UnicodeError):
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def url_host(host: str) -> str:
    """`host` as it appears in a URL (IPv6 in brackets; a wildcard bind shown as localhost)."""
    if host in WILDCARD_HOSTS:
        return "localhost" if host != "::" else "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def viewer_url(host: str, port: int, token: str | None) -> str:
    """The URL to open; with a token, the page is told the websocket URL that carries it."""
    base = f"http://{url_host(host)}:{port}/"
    if token is None:
        return base
    ws = f"ws://{url_host(host)}:{port}/?" + urllib.parse.urlencode({"token": token})
    return base + "?" + urllib.parse.urlencode({"websocket": ws})


class ConnectionGuard:
    """Decides whether a websocket handshake may become a viewer client."""

    def __init__(self, host: str, port: int, token: str | None):
        self.port, self.token = port, token
        names = LOOPBACK_NAMES if host in LOOPBACK_NAMES or is_loopback(host) else (url_host(host),)
        self.wildcard = host in WILDCARD_HOSTS
        self.origins = {f"{scheme}://{name}:{port}" for name in names for scheme in ("http", "https")}
        self.rejected = 0

    def refusal(self, path: str, headers) -> str | None:
        """Why a websocket request (its path and headers) is refused, or None to accept it."""
        origin = headers.get("Origin")
        if origin is not None and origin.rstrip("/") not in self._allowed_origins(headers):
            return f"origin {origin} is not this viewer's page"
        if self.token is not None:
            given = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).get("token", [""])[0]
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return "missing or wrong token"
        return None

    def _allowed_origins(self, headers) -> set[str]:
        if not self.wildcard:
            return self.origins
        # bound to every interface: the page's own origin is whatever address the browser used,
        # i.e. the Host it sent (a rebinding page also matches this, hence --token for such binds)
        host = headers.get("Host", "")
        return self.origins | {f"http://{host}", f"https://{host}"} if host.endswith(f":{self.port}") else self.origins

    def install(self, viser_server) -> None:
        """Close refused connections as they open, before viser sends them anything.

        Uses viser's websocket layer (viser 1.1.x: `_websock_server`, whose connect callbacks run
        before the connection's first message, and `_live_connections`, its websockets objects);
        if that layer changes, starting fails loudly rather than serving unguarded."""
        ws_server = getattr(viser_server, "_websock_server", None)
        if ws_server is None or not hasattr(ws_server, "_live_connections"):
            raise RuntimeError(
                "this viser version does not expose its websocket server; the viewer cannot guard connections"
            )

        async def guard(conn) -> None:
            connection = ws_server._live_connections.get(conn.client_id)
            if connection is None:
                return
            reason = self.refusal(connection.request.path, connection.request.headers)
            if reason is not None:
                self.rejected += 1
                await connection.close(POLICY_VIOLATION, reason)

        # first in line: viser's own callbacks only register handlers, they send nothing
        ws_server._client_connect_cb.insert(0, guard)


# ----------------------------------------------------------------------------------------------
# viser's public share tunnel


def disable_sharing(viser_server, keep_server_side: bool = False) -> None:
    """No client can open (or close) viser's share tunnel: its request and disconnect messages
    lose their handlers, and unless `keep_server_side` (--share, which opens it itself) the
    server's own entry point refuses too (viser 1.1.x: `request_share_url`, the handlers
    registered on `_websock_server`). Fails loudly if that layer changes."""
    from viser import _messages

    ws_server = getattr(viser_server, "_websock_server", None)
    handlers = getattr(ws_server, "_incoming_handlers", None)
    if handlers is None or not hasattr(viser_server, "request_share_url"):
        raise RuntimeError("this viser version does not expose its share handlers; the viewer cannot turn sharing off")
    for message in (_messages.ShareUrlRequest, _messages.ShareUrlDisconnect):
        handlers.pop(message, None)
    if not keep_server_side:

        def refuse(*args, **kwargs):
            raise RuntimeError("sharing is off in this viewer (splat view --share turns it on)")

        viser_server.request_share_url = refuse


def new_token() -> str:
    return secrets.token_urlsafe(16)


def open_share(viser_server, guard: ConnectionGuard) -> str:
    """Open the tunnel once (it blocks until the relay answers) and let its origin in; the
    caller has set a token. Returns the public page URL (without the token)."""
    url = viser_server.request_share_url(verbose=False)
    if not url:
        raise ShareError("--share: could not open viser's share tunnel (share.viser.studio did not answer)")
    parts = urllib.parse.urlsplit(url)
    guard.origins.add(f"{parts.scheme}://{parts.netloc}")
    return url


def share_url(page: str, token: str) -> str:
    """The public URL to open: the tunnel's page, told the websocket URL that carries the token."""
    parts = urllib.parse.urlsplit(page)
    ws = urllib.parse.urlunsplit(("wss" if parts.scheme == "https" else "ws", parts.netloc, "/", "", ""))
    ws += "?" + urllib.parse.urlencode({"token": token})
    return f"{parts.scheme}://{parts.netloc}/?" + urllib.parse.urlencode({"websocket": ws})
