"""A Docker Registry v2 fake that does token auth the way Artifact Registry does.

``HEAD /v2/<repo>/manifests/<tag>`` without a token valid for ``repository:<repo>:pull``
answers 401 with ``WWW-Authenticate: Bearer realm=…,service=…,scope=…``; the realm
``GET /v2/token?service=…&scope=…`` wants ``Basic oauth2accesstoken:<google token>``
and returns a token good for that one scope. ``fail_next`` scripts 5xx answers.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GOOGLE_TOKEN = "ya29.fake-google-token"
SERVICE = "us-central1-docker.pkg.dev"


class FakeRegistry:
    def __init__(self) -> None:
        self.present: set[str] = set()  # "repo:tag"
        self.token_requests: list[dict[str, str]] = []
        self.heads: list[tuple[str, str | None]] = []  # (path, Authorization)
        self.fail_next: list[int] = []  # statuses to answer the next HEADs with
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeRegistry:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(reg: FakeRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            if url.path != "/v2/token":
                self._answer(404)
                return
            with reg.lock:
                reg.token_requests.append(query)
            auth = self.headers.get("Authorization", "")
            user, _, password = (
                base64.b64decode(auth.removeprefix("Basic ")).decode().partition(":")
            )
            if not auth.startswith("Basic ") or (user, password) != (
                "oauth2accesstoken",
                GOOGLE_TOKEN,
            ):
                self._answer(403)
                return
            body = json.dumps({"token": "reg:" + query.get("scope", "")}).encode()
            self._answer(200, body, {"Content-Type": "application/json"})

        def do_HEAD(self) -> None:
            m = re.fullmatch(r"/v2/(.+)/manifests/(.+)", urllib.parse.unquote(self.path))
            if m is None:
                self._answer(404)
                return
            repo, tag = m.groups()
            auth = self.headers.get("Authorization")
            with reg.lock:
                reg.heads.append((repo, auth))
                fail = reg.fail_next.pop(0) if reg.fail_next else None
            if fail is not None:
                self._answer(fail)
                return
            scope = f"repository:{repo}:pull"
            if auth != f"Bearer reg:{scope}":
                realm = f"{reg.url}/v2/token"
                challenge = f'Bearer realm="{realm}",service="{SERVICE}",scope="{scope}"'
                self._answer(401, headers={"WWW-Authenticate": challenge})
                return
            self._answer(200 if f"{repo}:{tag}" in reg.present else 404)

    return Handler
