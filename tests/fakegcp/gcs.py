"""Cloud Storage JSON API subset that ENFORCES generation preconditions.

Objects live in memory; a write commits under one lock, so ``ifGenerationMatch=0``
(create-only) and ``ifGenerationMatch=g`` (compare-and-swap) are atomic between any
number of clients, as on GCS. Every answer is built under that lock too (an object's
JSON, its media and headers, a list page), so a reader never sees half of a patch; the
hashes of new data are computed before taking it, so a large upload does not hold up
every other request. There is no object versioning: an older generation is
gone once overwritten (404 when asked for by ``generation=``), as on a bucket without
versioning. Generations are microsecond timestamps, strictly increasing, so a
re-created object never reuses an old generation.

Routes: buckets insert/get; objects get (JSON or ``alt=media`` with Range), list
(prefix, delimiter, pageToken, maxResults, startOffset/endOffset), delete, patch;
uploads ``uploadType=media|multipart|resumable`` (tests/fakegcp/gcs_upload.py).
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from tests.fakegcp.schemas import validate
from tests.fakegcp.server import FakeError, Request, Response, Router

_B = r"/storage/v1/b/(?P<bucket>[^/]+)"


def rfc3339(ns: int) -> str:
    dt = datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _crc32c(data: bytes) -> str:
    import google_crc32c

    return base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode()


@dataclass
class StoredObject:
    bucket: str
    name: str
    data: bytes
    generation: int
    metageneration: int = 1
    content_type: str = "application/octet-stream"
    metadata: dict[str, str] = field(default_factory=dict)
    created_ns: int = field(default_factory=time.time_ns)
    updated_ns: int = field(default_factory=time.time_ns)
    md5: str = ""
    crc32c: str = ""

    def __post_init__(self) -> None:
        self.md5 = base64.b64encode(hashlib.md5(self.data).digest()).decode()
        self.crc32c = _crc32c(self.data)

    def resource(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "storage#object",
            "id": f"{self.bucket}/{self.name}/{self.generation}",
            "name": self.name,
            "bucket": self.bucket,
            "generation": str(self.generation),
            "metageneration": str(self.metageneration),
            "contentType": self.content_type,
            "size": str(len(self.data)),
            "md5Hash": self.md5,
            "crc32c": self.crc32c,
            "etag": f"{self.generation}-{self.metageneration}",
            "storageClass": "STANDARD",
            "timeCreated": rfc3339(self.created_ns),
            "updated": rfc3339(self.updated_ns),
        }
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out


def _int_param(req: Request, name: str) -> int | None:
    value = req.query.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise FakeError(400, f"Invalid argument for {name}: {value!r}", reason="invalid") from None


def check_preconditions(req: Request, current: StoredObject | None) -> None:
    """GCS's four conditions; a failed one is 412 conditionNotMet (304 for reads' NotMatch)."""
    gen = current.generation if current else 0
    meta = current.metageneration if current else 0
    read = req.method in ("GET", "HEAD")
    checks = [
        ("ifGenerationMatch", lambda v: v == gen, False),
        ("ifGenerationNotMatch", lambda v: v != gen, True),
        ("ifMetagenerationMatch", lambda v: current is not None and v == meta, False),
        ("ifMetagenerationNotMatch", lambda v: current is None or v != meta, True),
    ]
    for name, holds, not_match in checks:
        value = _int_param(req, name)
        if value is not None and not holds(value):
            if read and not_match:
                raise FakeError(304, "Not Modified")
            raise FakeError(
                412,
                f"At least one of the pre-conditions you specified did not hold. ({name})",
                reason="conditionNotMet",
            )


class GcsService:
    """In-memory buckets. ``max_page_size`` caps list pages (GCS: 1000)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.buckets: dict[str, dict[str, StoredObject]] = {}
        self.max_page_size = 1000
        self._last_generation = 0

    # -- helpers for tests and other services -----------------------------------

    def create_bucket(self, name: str) -> None:
        with self.lock:
            self.buckets.setdefault(name, {})

    def objects(self, bucket: str) -> dict[str, StoredObject]:
        try:
            return self.buckets[bucket]
        except KeyError:
            raise FakeError(
                404, "The specified bucket does not exist.", reason="notFound"
            ) from None

    def get_object(self, bucket: str, name: str) -> StoredObject:
        obj = self.objects(bucket).get(name)
        if obj is None:
            raise FakeError(404, f"No such object: {bucket}/{name}", reason="notFound")
        return obj

    def next_generation(self) -> int:
        with self.lock:
            self._last_generation = max(time.time_ns() // 1000, self._last_generation + 1)
            return self._last_generation

    def commit(
        self, req: Request, bucket: str, name: str, data: bytes, resource: dict[str, Any]
    ) -> StoredObject:
        """Write an object if ``req``'s preconditions hold against the current one."""
        if not name:
            raise FakeError(400, "Required object name", reason="required")
        obj = StoredObject(  # hashed here, outside the lock; its generation set below
            bucket,
            name,
            data,
            0,
            content_type=resource.get("contentType") or "application/octet-stream",
            metadata=dict(resource.get("metadata") or {}),
        )
        with self.lock:
            objects = self.objects(bucket)
            check_preconditions(req, objects.get(name))
            obj.generation = self.next_generation()
            obj.created_ns = obj.updated_ns = time.time_ns()
            objects[name] = obj
            return obj

    def put(self, bucket: str, name: str, data: bytes) -> StoredObject:
        """Write an object directly (for tests)."""
        empty = Request("POST", "", "", {}, {}, b"")
        return self.commit(empty, bucket, name, data, {})

    # -- routes ----------------------------------------------------------------

    def register(self, router: Router) -> None:
        from tests.fakegcp.gcs_upload import UploadRoutes

        add = router.add
        add("storage", "POST", r"/storage/v1/b", self.insert_bucket)
        add("storage", "GET", _B, self.get_bucket)
        add("storage", "GET", _B + r"/o", self.list_objects)
        add("storage", "GET", _B + r"/o/(?P<name>.+)", self.get)
        add("storage", "GET", r"/download" + _B + r"/o/(?P<name>.+)", self.get)
        add("storage", "DELETE", _B + r"/o/(?P<name>.+)", self.delete)
        add("storage", "PATCH", _B + r"/o/(?P<name>.+)", self.patch)
        UploadRoutes(self).register(router)

    def insert_bucket(self, req: Request) -> dict[str, Any]:
        body = validate("storage.v1", "Bucket", req.json())
        name = body.get("name", "")
        with self.lock:
            if name in self.buckets:
                raise FakeError(
                    409,
                    "Your previous request to create the named bucket succeeded "
                    "and you already own it.",
                    reason="conflict",
                )
            self.buckets[name] = {}
        return {"kind": "storage#bucket", "name": name, "id": name, "location": "US"}

    def get_bucket(self, req: Request, bucket: str) -> dict[str, Any]:
        with self.lock:
            self.objects(bucket)
        return {
            "kind": "storage#bucket",
            "name": bucket,
            "id": bucket,
            "location": "US",
            "metageneration": "1",
            "storageClass": "STANDARD",
        }

    def get(self, req: Request, bucket: str, name: str) -> Response | dict[str, Any]:
        with self.lock:
            obj = self.get_object(bucket, name)
            wanted = _int_param(req, "generation")
            if wanted is not None and wanted != obj.generation:
                raise FakeError(404, f"No such object: {bucket}/{name}", reason="notFound")
            check_preconditions(req, obj)
            if req.query.get("alt") != "media":
                return obj.resource()
            return self._media(req, obj)

    def _media(self, req: Request, obj: StoredObject) -> Response:
        headers = {
            "Content-Type": obj.content_type,
            "ETag": f'"{obj.generation}-{obj.metageneration}"',
            "x-goog-generation": str(obj.generation),
            "x-goog-metageneration": str(obj.metageneration),
            "x-goog-hash": f"crc32c={obj.crc32c},md5={obj.md5}",
            "x-goog-stored-content-length": str(len(obj.data)),
            "x-goog-stored-content-encoding": "identity",
        }
        span = req.headers.get("range", "")
        if not span.startswith("bytes="):
            return Response(200, obj.data, headers)
        first_s, _, last_s = span[len("bytes=") :].partition("-")
        size = len(obj.data)
        first = int(first_s) if first_s else max(0, size - int(last_s))
        last = min(int(last_s), size - 1) if first_s and last_s else size - 1
        if first >= size and size > 0:
            raise FakeError(
                416, "Request range not satisfiable", reason="requestedRangeNotSatisfiable"
            )
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        return Response(206, obj.data[first : last + 1], headers)

    def delete(self, req: Request, bucket: str, name: str) -> Response:
        with self.lock:
            current = self.get_object(bucket, name)
            check_preconditions(req, current)
            del self.objects(bucket)[name]
        return Response(204, b"")

    def patch(self, req: Request, bucket: str, name: str) -> dict[str, Any]:
        body = validate("storage.v1", "Object", req.json())
        with self.lock:
            obj = self.get_object(bucket, name)
            check_preconditions(req, obj)
            if "metadata" in body:
                obj.metadata = {k: v for k, v in (body["metadata"] or {}).items() if v is not None}
            if "contentType" in body:
                obj.content_type = body["contentType"]
            obj.metageneration += 1
            obj.updated_ns = time.time_ns()
            return obj.resource()

    def list_objects(self, req: Request, bucket: str) -> dict[str, Any]:
        prefix = req.query.get("prefix", "")
        delimiter = req.query.get("delimiter", "")
        start = req.query.get("startOffset", "")
        end = req.query.get("endOffset", "")
        token = req.query.get("pageToken", "")
        after = base64.urlsafe_b64decode(token.encode()).decode() if token else ""
        size = min(_int_param(req, "maxResults") or self.max_page_size, self.max_page_size)
        with self.lock:
            names = sorted(self.objects(bucket))
            entries: list[tuple[str, StoredObject | None]] = []
            for name in names:
                if not name.startswith(prefix) or name < start or (end and name >= end):
                    continue
                cut = name.find(delimiter, len(prefix)) if delimiter else -1
                if cut >= 0:
                    folder = name[: cut + len(delimiter)]
                    if not entries or entries[-1][0] != folder:
                        entries.append((folder, None))
                else:
                    entries.append((name, self.buckets[bucket][name]))
            entries = [e for e in entries if e[0] > after]
            page, rest = entries[:size], entries[size:]
            items = [obj.resource() for _, obj in page if obj is not None]
        out: dict[str, Any] = {"kind": "storage#objects"}
        prefixes = [key for key, obj in page if obj is None]
        if items:
            out["items"] = items
        if prefixes:
            out["prefixes"] = prefixes
        if rest:
            out["nextPageToken"] = base64.urlsafe_b64encode(page[-1][0].encode()).decode()
        return out
