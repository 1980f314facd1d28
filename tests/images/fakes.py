"""A local HTTP fake of the few Google routes the image builders call, on 127.0.0.1:

- Cloud Storage JSON API: multipart upload (with ``ifGenerationMatch=0``), object
  metadata, media download with a byte offset (``Range``);
- Cloud Build v1: ``builds.create`` returning an Operation, ``builds.get`` walking a
  scripted list of statuses (one step per call, never by time) and appending a log line
  to the logs bucket at each step;
- Docker Registry v2: ``HEAD /v2/<path>/manifests/<tag>`` answering from a set of tags.

Faults are scripted: ``fail_create = (403, "...")``, ``final_status``, ``failure_detail``,
``fail_get`` (statuses for the next ``builds.get`` calls), ``last_log_line``.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeState:
    objects: dict[tuple[str, str], bytes] = field(default_factory=dict)
    builds: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: list[dict[str, Any]] = field(default_factory=list)  # builds.create bodies
    manifests: set[str] = field(default_factory=set)  # "path:tag" present in the registry
    registry_status: int | None = None  # force an HTTP status on every registry call
    fail_create: tuple[int, str] | None = None
    fail_upload: tuple[int, str] | None = None
    steps: tuple[str, ...] = ("QUEUED", "WORKING", "WORKING")
    final_status: str = "SUCCESS"
    failure_detail: str = ""
    fail_get: list[int] = field(default_factory=list)  # statuses for the next builds.get
    last_log_line: bytes = b""  # appended, without a newline, when the build ends
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _error(code: int, message: str) -> dict[str, Any]:
    status = {403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED"}
    return {"error": {"code": code, "message": message, "status": status.get(code, "INTERNAL")}}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing
    def _send(self, code: int, body: Any = None, ctype: str = "application/json") -> None:
        raw = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        data = raw or b""
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _route(self) -> None:
        st = self.server.state
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        path = urllib.parse.unquote(url.path)
        with st.lock:
            st.requests.append(f"{self.command} {path}")
        for method, pattern, fn in ROUTES:
            if method == self.command and (m := re.fullmatch(pattern, path)):
                fn(self, st, query, *m.groups())
                return
        self._send(404, _error(404, f"no fake route for {self.command} {path}"))

    do_GET = do_POST = do_HEAD = _route

    # -- storage
    def upload(self, st: FakeState, q: dict[str, str], bucket: str) -> None:
        if st.fail_upload:
            self._send(st.fail_upload[0], _error(*st.fail_upload))
            return
        raw = self._body()
        ctype = self.headers["Content-Type"]
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw
        )
        parts = list(msg.iter_parts())
        meta = json.loads(parts[0].get_content())
        media = parts[1].get_payload(decode=True)
        name = meta.get("name") or q["name"]
        with st.lock:
            if q.get("ifGenerationMatch") == "0" and (bucket, name) in st.objects:
                self._send(412, _error(412, "conditionNotMet"))
                return
            st.objects[(bucket, name)] = media
        self._send(200, self._resource(bucket, name, media))

    @staticmethod
    def _resource(bucket: str, name: str, data: bytes) -> dict[str, Any]:
        return {
            "kind": "storage#object",
            "bucket": bucket,
            "name": name,
            "size": str(len(data)),
            "generation": "1",
            "metageneration": "1",
        }

    def get_bucket(self, st: FakeState, q: dict[str, str], bucket: str) -> None:
        self._send(200, {"kind": "storage#bucket", "name": bucket, "id": bucket})

    def get_object(self, st: FakeState, q: dict[str, str], bucket: str, name: str) -> None:
        data = st.objects.get((bucket, name))
        if data is None:
            self._send(404, _error(404, "No such object"))
        elif q.get("alt") == "media":
            start = 0
            if rng := re.match(r"bytes=(\d+)-", self.headers.get("Range", "")):
                start = int(rng.group(1))
            self._send(206 if start else 200, data[start:], "text/plain")
        else:
            self._send(200, self._resource(bucket, name, data))

    def download(self, st: FakeState, q: dict[str, str], bucket: str, name: str) -> None:
        self.get_object(st, {**q, "alt": "media"}, bucket, name)

    # -- cloud build
    def create_build(self, st: FakeState, q: dict[str, str], project: str) -> None:
        body = json.loads(self._body())
        if st.fail_create:
            self._send(st.fail_create[0], _error(*st.fail_create))
            return
        with st.lock:
            build_id = f"b{len(st.builds) + 1}"
            build = {**body, "id": build_id, "projectId": project, "status": "QUEUED"}
            st.builds[build_id] = {"build": build, "calls": 0}
            st.created.append(body)
        op = {
            "name": f"operations/build/{project}/{build_id}",
            "metadata": {
                "@type": "type.googleapis.com/google.devtools.cloudbuild.v1.BuildOperationMetadata",
                "build": build,
            },
        }
        self._send(200, op)

    def get_build(self, st: FakeState, q: dict[str, str], project: str, build_id: str) -> None:
        with st.lock:
            fail = st.fail_get.pop(0) if st.fail_get else None
        if fail is not None:
            self._send(fail, _error(fail, "backend error"))
            return
        with st.lock:
            rec = st.builds.get(build_id)
            if rec is None:
                self._send(404, _error(404, "no such build"))
                return
            n = rec["calls"]
            rec["calls"] += 1
            build = rec["build"]
            statuses = [*st.steps, st.final_status]
            build["status"] = statuses[min(n, len(statuses) - 1)]
            if build["status"] not in ("QUEUED",) and n < len(statuses):
                bucket, _, prefix = build["logsBucket"].removeprefix("gs://").partition("/")
                key = (bucket, f"{prefix}/log-{build_id}.txt")
                line = f"step {n}: {build['status']}\n".encode()
                if n == len(statuses) - 1:
                    line += st.last_log_line
                st.objects[key] = st.objects.get(key, b"") + line
            if build["status"] == "FAILURE" and st.failure_detail:
                build["failureInfo"] = {"type": "FETCH_SOURCE_FAILED", "detail": st.failure_detail}
                build["statusDetail"] = st.failure_detail
        self._send(200, build)

    # -- registry
    def manifest(self, st: FakeState, q: dict[str, str], path: str, tag: str) -> None:
        if st.registry_status is not None:
            self._send(st.registry_status)
        else:
            self._send(200 if f"{path}:{tag}" in st.manifests else 404)


ROUTES = [
    ("POST", r"/upload/storage/v1/b/([^/]+)/o", _Handler.upload),
    ("GET", r"/storage/v1/b/([^/]+)", _Handler.get_bucket),
    ("GET", r"/storage/v1/b/([^/]+)/o/(.+)", _Handler.get_object),
    ("GET", r"/download/storage/v1/b/([^/]+)/o/(.+)", _Handler.download),
    ("POST", r"/v1/projects/([^/]+)/builds", _Handler.create_build),
    ("GET", r"/v1/projects/([^/]+)/builds/([^/]+)", _Handler.get_build),
    ("HEAD", r"/v2/(.+)/manifests/([^/]+)", _Handler.manifest),
]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: FakeState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class FakeGoogle:
    """Start with :meth:`start`, stop with :meth:`stop`; ``url`` is the endpoint."""

    def __init__(self) -> None:
        self.state = FakeState()
        self._server = _Server(self.state)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeGoogle:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
