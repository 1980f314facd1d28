"""Cloud Storage uploads: ``uploadType=media``, ``multipart`` and ``resumable``.

Preconditions are checked when a resumable session starts (as GCS does, so a doomed
upload fails before sending gigabytes) and again, atomically, when the last chunk
commits the object.
"""

from __future__ import annotations

import itertools
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.fakegcp.schemas import validate
from tests.fakegcp.server import FakeError, Request, Response, Router

if TYPE_CHECKING:
    from tests.fakegcp.gcs import GcsService

_UPLOAD = r"/upload/storage/v1/b/(?P<bucket>[^/]+)/o"
_RANGE = re.compile(r"^bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)$")


@dataclass
class Session:
    bucket: str
    name: str
    resource: dict[str, Any]
    conditions: dict[str, str]
    data: bytearray = field(default_factory=bytearray)


def _split_multipart(req: Request) -> tuple[dict[str, Any], bytes]:
    ctype = req.headers.get("content-type", "")
    match = re.search(r'boundary="?([^";]+)"?', ctype)
    if not ctype.startswith("multipart/related") or not match:
        raise FakeError(
            400, "multipart upload needs Content-Type multipart/related", reason="invalid"
        )
    delimiter = b"--" + match.group(1).encode()
    parts = req.body.split(delimiter)[1:-1]
    if len(parts) != 2:
        raise FakeError(400, "multipart upload needs exactly 2 parts", reason="invalid")
    contents = []
    for part in parts:
        _, _, content = part.partition(b"\r\n\r\n")
        contents.append(content[:-2] if content.endswith(b"\r\n") else content)
    import json

    return json.loads(contents[0] or b"{}"), contents[1]


class UploadRoutes:
    def __init__(self, gcs: GcsService) -> None:
        self.gcs = gcs
        self.sessions: dict[str, Session] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def register(self, router: Router) -> None:
        router.add("storage", "POST", _UPLOAD, self.start)
        router.add("storage", "PUT", _UPLOAD, self.chunk)

    def start(self, req: Request, bucket: str) -> Response | dict[str, Any]:
        kind = req.query.get("uploadType", "")
        if kind == "media":
            resource = {"contentType": req.headers.get("content-type")}
            obj = self.gcs.commit(req, bucket, req.query.get("name", ""), req.body, resource)
            return obj.resource()
        if kind == "multipart":
            raw, data = _split_multipart(req)
            resource = validate("storage.v1", "Object", raw)
            name = req.query.get("name") or resource.get("name", "")
            return self.gcs.commit(req, bucket, name, data, resource).resource()
        if kind == "resumable":
            resource = validate("storage.v1", "Object", req.json())
            name = req.query.get("name") or resource.get("name", "")
            with self.gcs.lock:
                current = self.gcs.objects(bucket).get(name)
                from tests.fakegcp.gcs import check_preconditions

                check_preconditions(req, current)
            conditions = {k: v for k, v in req.query.items() if k.startswith("if")}
            with self._lock:
                upload_id = f"fake-upload-{next(self._ids)}"
                self.sessions[upload_id] = Session(bucket, name, resource, conditions)
            host = req.headers.get("host", "127.0.0.1")
            location = (
                f"http://{host}/upload/storage/v1/b/{bucket}/o"
                f"?uploadType=resumable&upload_id={upload_id}"
            )
            return Response(200, b"", {"Location": location})
        raise FakeError(400, f"unknown uploadType {kind!r}", reason="invalid")

    def chunk(self, req: Request, bucket: str) -> Response | dict[str, Any]:
        upload_id = req.query.get("upload_id", "")
        with self._lock:
            session = self.sessions.get(upload_id)
        if session is None:
            raise FakeError(404, "No such upload session", reason="notFound")
        match = _RANGE.match(req.headers.get("content-range", "bytes */*"))
        if not match:
            raise FakeError(400, "bad Content-Range", reason="invalid")
        first, _, total = match.groups()
        if first is not None:
            if int(first) != len(session.data):
                # The client resends from what we report; tell it where we are.
                return self._incomplete(session)
            session.data.extend(req.body)
        if total == "*" or len(session.data) < int(total):
            return self._incomplete(session)
        conditional = Request(req.method, req.path, req.raw_path, session.conditions, {}, b"")
        obj = self.gcs.commit(
            conditional, session.bucket, session.name, bytes(session.data), session.resource
        )
        with self._lock:
            self.sessions.pop(upload_id, None)
        return obj.resource()

    def _incomplete(self, session: Session) -> Response:
        headers = {"Range": f"bytes=0-{len(session.data) - 1}"} if session.data else {}
        return Response(308, b"", headers)
