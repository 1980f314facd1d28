"""GCSStore: the ObjectStore contract on a Cloud Storage bucket (``gs://bucket/prefix``).

- Generations are GCS object generations; conditions are ``ifGenerationMatch``, which
  GCS applies atomically, so create-only and compare-and-swap hold between machines.
- Every call retries 429/5xx/connection errors with exponential backoff within
  ``retry_timeout`` (an agent passes its ``call_timeout``). A conditional write is safe
  to retry; the one ambiguity — a write that succeeded but whose answer was lost, then
  fails its own retry with 412 — is resolved by a random write id stored in the
  object's metadata: a 412 on an object carrying our id is our own success.
- Large files stream through resumable uploads in ``chunk_size`` pieces; reads of one
  object are pinned to one generation, so data and generation always belong together.
- One request per call: a ``get`` is one ``alt=media`` GET whose headers carry the
  generation of the bytes it returns; a missing object costs its 404 and nothing else.

It speaks Cloud Storage's JSON API itself (``gcs_wire.py``, over the standard library's
http.client: ``http_pool.py``; credentials from ``gcs_auth.py``: the metadata server's
token or google-auth's), imported on the first request, never at module import. A
GCSStore may be called from several threads at once (see
:class:`relaunch.store.gcs_wire.Wire`): calls share nothing but the connection pool and
the credentials.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
from calendar import timegm
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from relaunch.errors import ObjectNotFound, PreconditionFailed, StoreError
from relaunch.store.base import Listing, ObjectMeta, check_key
from relaunch.store.gcs_transfer import PinnedReader, download, upload_resumable
from relaunch.store.gcs_wire import Wire

_WRITE_ID = "relaunch-write-id"
_MULTIPART_MAX = 8 << 20  # above this, uploads are resumable
_CONTENT_TYPE = "application/octet-stream"
_LIST_FIELDS = "items(name,generation,size,updated),prefixes,nextPageToken"
_RFC3339 = re.compile(r"(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?")


def rfc3339_ns(text: str | None) -> int:
    """Nanoseconds since the epoch of a Cloud Storage timestamp (0 when absent)."""
    m = _RFC3339.match(text or "")
    if not m:
        return 0
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    seconds = timegm((y, mo, d, h, mi, s, 0, 0, 0))
    zone = m.group(8) or "Z"
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    fraction = int(((m.group(7) or "") + "000000000")[:9])
    return seconds * 1_000_000_000 + fraction


class _Tries:
    """Whether a write was sent more than once (only then can a 412 be our own)."""

    def __init__(self) -> None:
        self.n = 0

    def sent(self) -> None:
        self.n += 1


class GCSStore:
    """A store under ``gs://bucket/prefix`` (the prefix may be empty)."""

    def __init__(
        self,
        url: str,
        *,
        chunk_size: int = 16 << 20,
        retry_initial: float = 0.5,
        retry_timeout: float = 120.0,
    ) -> None:
        if not url.startswith("gs://") or not url[len("gs://") :].split("/", 1)[0]:
            raise StoreError(f"not a bucket URL: {url!r}", hint="use gs://BUCKET[/PREFIX]")
        bucket, _, prefix = url[len("gs://") :].partition("/")
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self.url = f"gs://{bucket}/{self.prefix}" if self.prefix else f"gs://{bucket}"
        self.chunk_size = max(256 << 10, chunk_size // (256 << 10) * (256 << 10))
        self._wire = Wire(
            bucket, self.url, retry_initial=retry_initial, retry_timeout=retry_timeout
        )

    def __repr__(self) -> str:
        return f"GCSStore({self.url!r})"

    # -- plumbing --------------------------------------------------------------

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _key(self, name: str) -> str:
        return name[len(self.prefix) + 1 :] if self.prefix else name

    def _meta(self, resource: dict[str, Any]) -> ObjectMeta:
        return ObjectMeta(
            self._key(resource["name"]),
            int(resource["generation"]),
            int(resource.get("size") or 0),
            rfc3339_ns(resource.get("updated")),
        )

    def _resource(self, name: str, key: str) -> dict[str, Any] | None:
        """The object's JSON resource, or None when it does not exist."""
        try:
            answer = self._wire.call("GET", self._wire.object_path(name), where=repr(key))
        except ObjectNotFound:
            return None
        resource: dict[str, Any] = answer.json()
        return resource

    def _write(
        self,
        key: str,
        condition: int | None,
        send: Callable[[str, dict[str, Any], dict[str, int], _Tries], dict[str, Any]],
    ) -> int:
        """One write with a fresh write id in its metadata; a 412 after a retry is
        checked against that id (our own write whose answer was lost)."""
        name = self._name(key)
        write_id = secrets.token_hex(8)
        resource = {"name": name, "contentType": _CONTENT_TYPE, "metadata": {_WRITE_ID: write_id}}
        conditions = {} if condition is None else {"ifGenerationMatch": condition}
        tries = _Tries()
        try:
            done = send(name, resource, conditions, tries)
        except PreconditionFailed:
            own = self._own_write(name, key, write_id) if tries.n > 1 else None
            if own is None:
                raise
            done = own
        return int(done["generation"])

    def _own_write(self, name: str, key: str, write_id: str) -> dict[str, Any] | None:
        """The object's resource if its current content was written with ``write_id``."""
        resource = self._resource(name, key)
        if resource is not None and (resource.get("metadata") or {}).get(_WRITE_ID) == write_id:
            return resource
        return None

    def _multipart(
        self, data: bytes
    ) -> Callable[[str, dict[str, Any], dict[str, int], _Tries], dict[str, Any]]:
        def send(
            name: str, resource: dict[str, Any], conditions: dict[str, int], tries: _Tries
        ) -> dict[str, Any]:
            boundary = f"relaunch-{secrets.token_hex(16)}"
            head = (
                f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
                f"{json.dumps(resource)}\r\n--{boundary}\r\n"
                f"Content-Type: {_CONTENT_TYPE}\r\n\r\n"
            )
            body = head.encode() + data + f"\r\n--{boundary}--\r\n".encode()
            answer = self._wire.call(
                "POST",
                self._wire.object_path(name, upload=True),
                where=repr(self._key(name)),
                query={"uploadType": "multipart", **conditions},
                body=body,
                headers={"Content-Type": f"multipart/related; boundary={boundary}"},
                conditional=bool(conditions),
                on_send=tries.sent,
            )
            resource_out: dict[str, Any] = answer.json()
            return resource_out

        return send

    def _resumable(
        self, source: IO[bytes], size: int
    ) -> Callable[[str, dict[str, Any], dict[str, int], _Tries], dict[str, Any]]:
        def send(
            name: str, resource: dict[str, Any], conditions: dict[str, int], tries: _Tries
        ) -> dict[str, Any]:
            tries.n = 2
            key = self._key(name)
            write_id = resource["metadata"][_WRITE_ID]
            return upload_resumable(
                self._wire,
                name,
                repr(key),
                resource,
                conditions,
                source,
                size,
                self.chunk_size,
                lambda: self._own_write(name, key, write_id),
            )

        return send

    # -- the contract ----------------------------------------------------------

    def get(self, key: str) -> tuple[bytes, int]:
        answer = self._wire.call(
            "GET", self._wire.object_path(self._name(key)), where=repr(key), query={"alt": "media"}
        )
        return answer.body, answer.generation()

    def stat(self, key: str) -> ObjectMeta | None:
        resource = self._resource(self._name(key), key)
        return None if resource is None else self._meta(resource)

    def put(self, key: str, data: bytes, *, if_generation_match: int | None = None) -> int:
        if len(data) > _MULTIPART_MAX:
            return self._write(
                key, if_generation_match, self._resumable(io.BytesIO(data), len(data))
            )
        return self._write(key, if_generation_match, self._multipart(data))

    def upload_file(self, key: str, path: Path, *, if_generation_match: int | None = None) -> int:
        with open(path, "rb") as source:
            size = os.fstat(source.fileno()).st_size
            if size > _MULTIPART_MAX:
                return self._write(key, if_generation_match, self._resumable(source, size))
            return self._write(key, if_generation_match, self._multipart(source.read()))

    def delete(self, key: str, *, if_generation_match: int | None = None) -> None:
        conditions = (
            {} if if_generation_match is None else {"ifGenerationMatch": if_generation_match}
        )
        try:
            self._wire.call(
                "DELETE",
                self._wire.object_path(self._name(key)),
                where=repr(key),
                query=conditions,
                ok=(200, 204),
                conditional=if_generation_match is not None,
            )
        except ObjectNotFound:
            pass  # absent and unconditional: not an error (the contract)

    def list(self, prefix: str, *, delimiter: str | None = None) -> Listing:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        objects: list[ObjectMeta] = []
        prefixes: list[str] = []
        query: dict[str, str] = {"prefix": full, "fields": _LIST_FIELDS}
        if delimiter:
            query["delimiter"] = delimiter
        while True:
            page = self._wire.call(
                "GET", self._wire.list_path(), where=repr(prefix or "/"), query=query
            ).json()
            objects.extend(self._meta(item) for item in page.get("items", ()))
            prefixes.extend(self._key(p) for p in page.get("prefixes", ()))
            token = page.get("nextPageToken")
            if not token:
                break
            query["pageToken"] = token
        objects.sort(key=lambda m: m.key)
        return Listing(objects, sorted(prefixes))

    def download_file(self, key: str, path: Path) -> int:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        try:
            with open(tmp, "wb") as out:
                generation = download(self._wire, self._name(key), repr(key), out)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return generation

    def open_read(self, key: str) -> IO[bytes]:
        """A reader pinned to the current generation: if the object is replaced while
        it is read, reading raises ObjectNotFound instead of mixing two versions."""
        meta = self.stat(key)
        if meta is None:
            raise ObjectNotFound(f"no object {key!r} in {self.url}")
        raw = PinnedReader(self._wire, self._name(key), repr(key), meta.generation, meta.size)
        return io.BufferedReader(raw, buffer_size=min(self.chunk_size, 8 << 20))
