"""The HTTP side of the fake: a threaded server on 127.0.0.1, routing, Google's error shape.

Services register routes ``(api, method, regex, handler)``; a handler takes the
:class:`Request` and the regex's named groups and returns a JSON-able dict or a
:class:`Response`, or raises :class:`FakeError`, which is rendered the way Google
renders errors (``{"error": {"code", "message", "status", "errors", "details"}}``).
Before routing, the fault script may answer instead (tests/fakegcp/faults.py).

``Router.latency`` adds a delay to every request of an API (``{"storage": 0.02}``; key
``"*"`` for every API), slept in the request's own thread before the route runs and
outside every lock, so concurrent requests overlap as they do over a real network. One
router may be served on several ports (:class:`HttpServer` ``name``): ``Request.via``
says which one a request came through, so a benchmark can tell its clients apart.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


class FakeError(Exception):
    """An error answer in Google's JSON shape."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        status: str | None = None,
        reason: str | None = None,
        domain: str = "global",
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or _STATUS_NAMES.get(code, "UNKNOWN")
        self.reason = reason
        self.domain = domain
        self.details = details or []

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.reason:
            err["errors"] = [
                {"message": self.message, "domain": self.domain, "reason": self.reason}
            ]
        if self.details:
            err["details"] = self.details
        return {"error": err}


@dataclass
class Response:
    status: int = 200
    body: bytes | dict[str, Any] | list[Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: send the status, the headers and half the body, then close the connection
    drop: bool = False


class Drop:
    """What ``Router.before`` returns to have the answer cut off half way (the call
    took effect; the connection broke while its answer was on the wire)."""


@dataclass
class Request:
    method: str
    path: str  # percent-decoded
    raw_path: str  # as sent (object names keep their %2F)
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    via: str = "main"  # the name of the HttpServer it came through

    def json(self) -> Any:
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except ValueError:
            raise FakeError(400, "Invalid JSON payload received.", reason="parseError") from None


Handler = Callable[..., "Response | dict[str, Any]"]


@dataclass
class Route:
    api: str
    method: str
    pattern: re.Pattern[str]
    handler: Handler


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []
        # Called before a route runs; may raise (a fault) or return a FakeError to send
        # *after* the route ran (the call took effect but its answer was lost), or a
        # Drop to cut the route's answer off half way.
        self.before: Callable[[str, Request], FakeError | Drop | None] | None = None
        # Called after a route answered (benchmarks count operations with it).
        self.after: Callable[[str, Request, Response], None] | None = None
        self.log: list[tuple[str, str, str]] = []  # (api, method, path) of every request
        self.requests: list[bytes] = []  # every request as sent: line, query, body
        self.keep_requests = True  # False: keep no log (a long benchmark's memory)
        #: seconds added to each request, by API ("*": every API)
        self.latency: dict[str, float] = {}
        self._log_lock = threading.Lock()

    def delay(self, api: str) -> float:
        return self.latency.get(api, self.latency.get("*", 0.0))

    def add(self, api: str, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append(Route(api, method, re.compile(pattern + r"$"), handler))

    def dispatch(self, req: Request) -> Response:
        try:
            for route in self.routes:
                match = route.pattern.match(req.raw_path)
                if match and route.method == req.method:
                    return self._route(route, match, req)
            raise FakeError(404, f"no route for {req.method} {req.path} in the fake")
        except FakeError as e:
            return Response(e.code, e.body())
        except Exception as e:  # a bug in the fake: say so instead of dropping the connection
            import traceback

            error = FakeError(500, f"fakegcp bug: {e!r}\n{traceback.format_exc()}")
            return Response(500, error.body())

    def _route(self, route: Route, match: re.Match[str], req: Request) -> Response:
        if self.keep_requests:
            with self._log_lock:
                self.log.append((route.api, req.method, req.path))
                line = f"{req.method} {req.raw_path} {req.query}\n".encode()
                self.requests.append(line + req.body)
        delay = self.delay(route.api)
        if delay > 0:
            time.sleep(delay)  # in this request's thread, holding no lock
        try:
            late = self.before(route.api, req) if self.before else None
            groups = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
            out = route.handler(req, **groups)
            if isinstance(late, FakeError):
                raise late
            resp = out if isinstance(out, Response) else Response(200, out)
            if isinstance(late, Drop):
                resp.drop = True
        except FakeError as e:
            resp = Response(e.code, e.body())
        if self.after is not None:
            self.after(route.api, req, resp)
        return resp


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        req = Request(
            self.command,
            unquote(parts.path),
            parts.path,
            query,
            {k.lower(): v for k, v in self.headers.items()},
            self._body(),
            self.server.name,
        )
        resp = self.server.router.dispatch(req)
        body = resp.body
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
            resp.headers.setdefault("Content-Type", "application/json; charset=UTF-8")
        self.send_response(resp.status)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if resp.drop:  # half the answer, then the connection breaks
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5: a client opening 32 connections at once (a
    # pool of readers) had SYNs dropped and waited a 1 s retransmit; Google's front
    # ends do not.
    request_queue_size = 128

    def __init__(self, router: Router, name: str, tls: ssl.SSLContext | None = None) -> None:
        self.router = router
        self.name = name
        super().__init__(("127.0.0.1", 0), _Handler)
        if tls is not None:  # each connection's handshake in its own thread, on first read
            self.socket = tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        # a killed workload's socket, or a client that refused the TLS certificate
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError)):
            super().handle_error(request, client_address)


class HttpServer:
    """Serves ``router`` on an OS-chosen port of 127.0.0.1 from a background thread;
    requests carry ``name`` as ``Request.via``. With ``tls`` (a server context,
    tests/fakegcp/tls.py) over https."""

    def __init__(
        self, router: Router, name: str = "main", tls: ssl.SSLContext | None = None
    ) -> None:
        self.name = name
        self._server = _Server(router, name, tls)
        self.port = self._server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()

    def stop(self) -> None:
        """Idempotent; safe before start."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
