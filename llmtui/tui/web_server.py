"""`llmtui web`: textual-serve's server with a door that only its user can open.

Each browser session starts a wizard process that reads and writes files and trains models, so:
- a random token per launch, printed in the address; the page, its websocket and downloads need it (in the
  address, or the cookie the page sets: HttpOnly, SameSite=Strict, so other sites' pages never send it);
- the Origin of a request, when the browser sends one, must be the server's own (no other site may open the
  websocket from a page the user visits), and on loopback the Host must be a loopback name (DNS rebinding);
- at most `max_sessions` wizard processes at once;
- a non-loopback address only with `allow_remote` (the caller prints a warning).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket
from urllib.parse import urlsplit

from aiohttp import web
from textual_serve.server import Server

from llmtui.errors import LlmtuiError

COOKIE = "llmtui_token"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is on this machine only (a name is resolved)."""
    host = host.strip("[]")
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def check_listen_address(host: str, port: int, allow_remote: bool) -> None:
    """Refuse a non-loopback host without `allow_remote`, an unknown host and a busy port, each in one line."""
    if not allow_remote and not is_loopback(host):
        raise LlmtuiError(
            f"--host {host} would let other machines start wizard sessions on this one",
            hint="keep the default 127.0.0.1 (reach it from elsewhere through an SSH tunnel), or add "
            "--allow-remote if you mean it",
        )
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise LlmtuiError(
            f"cannot listen on --host {host}: {exc.strerror or exc}",
            hint="give an address of this machine, e.g. 127.0.0.1",
        ) from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise LlmtuiError(
                f"cannot listen on {host} port {port}: {exc.strerror or exc}",
                hint="choose another --port (is another llmtui web running?)",
            ) from None


class GuardedServer(Server):
    """textual-serve's Server behind a token, an Origin/Host check and a cap on wizard processes."""

    def __init__(
        self,
        command: str,
        host: str,
        port: int,
        max_sessions: int,
        allow_remote: bool,
        token: str | None = None,
        **kwargs,
    ):
        super().__init__(command, host=host, port=port, **kwargs)
        self.token = token or secrets.token_urlsafe(24)
        self.max_sessions = max_sessions
        self.allow_remote = allow_remote
        self.sessions = 0

    @property
    def url(self) -> str:
        """The address to open: the page with the token."""
        return f"{self.public_url}/?token={self.token}"

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(self._guard)
        return app

    def _has_token(self, request: web.Request) -> bool:
        given = request.query.get("token") or request.cookies.get(COOKIE) or ""
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _foreign(self, request: web.Request) -> str | None:
        """Why the request does not come from this server's own page (None when it does)."""
        host = urlsplit(f"//{request.host}").hostname or ""
        if not self.allow_remote and host.lower() not in LOOPBACK_NAMES and not _is_loopback_ip(host):
            return f"Host {request.host!r} is not this server's loopback address"
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc.lower() != request.host.lower():
            return f"Origin {origin!r} is not this server"
        return None

    @web.middleware
    async def _guard(self, request: web.Request, handler):
        if request.path.startswith("/static/"):  # the terminal's script and styles: public files, no data
            return await handler(request)
        problem = self._foreign(request)
        if problem:
            raise web.HTTPForbidden(text=f"llmtui web: {problem}\n")
        if not self._has_token(request):
            raise web.HTTPForbidden(text="llmtui web: open the address with the token that `llmtui web` printed\n")
        response = await handler(request)
        if request.path == "/" and request.query.get("token"):
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict", path="/")
        return response

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        if self.sessions >= self.max_sessions:
            raise web.HTTPServiceUnavailable(
                text=f"llmtui web: {self.sessions} wizard sessions are open (the most is {self.max_sessions}); "
                "close one, or start llmtui web with a larger --max-sessions\n"
            )
        self.sessions += 1
        try:
            return await super().handle_websocket(request)
        finally:
            self.sessions -= 1

    async def on_startup(self, app: web.Application) -> None:
        """Quiet: the command prints the address with its token itself."""


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
