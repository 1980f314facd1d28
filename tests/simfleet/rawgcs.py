"""A small Cloud Storage JSON client (standard library only) for the simulator of thousands
of runtimes (``simulator.py``) and a benchmark's own reads and writes. It makes the same
requests as relaunch's GCSStore in the steady state (one GET per read, one media upload
with ``ifGenerationMatch`` per write) at a tenth of its CPU, so that a 2-core machine
can simulate thousands of runtimes without starving the agent it measures.

Not a store for relaunch itself: no retries, no write ids, no resumable uploads.
"""

from __future__ import annotations

import http.client
import json
import threading
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlsplit

from relaunch.errors import ObjectNotFound, PreconditionFailed, StoreError
from relaunch.store.base import Listing, ObjectMeta


class RawGCS:
    """The ObjectStore calls a simulated runtime needs, on ``gs://bucket/prefix`` served
    at ``endpoint`` (http://127.0.0.1:PORT). One connection per thread."""

    def __init__(self, url: str, endpoint: str, timeout: float = 60.0) -> None:
        bucket, _, prefix = url[len("gs://") :].partition("/")
        self.url = url
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        parts = urlsplit(endpoint)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self._local = threading.local()

    def _name(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        for attempt in range(2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self._local.conn = conn
            try:
                conn.request(method, path, body=body, headers=headers or {})
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                self._local.conn = None
                if attempt:
                    raise StoreError(f"storage request failed: {e}") from None
        raise AssertionError("unreachable")

    def _object_path(self, key: str) -> str:
        return f"/storage/v1/b/{self.bucket}/o/{quote(self._name(key), safe='')}"

    def get(self, key: str) -> tuple[bytes, int]:
        status, headers, data = self._request("GET", self._object_path(key) + "?alt=media")
        if status == 404:
            raise ObjectNotFound(f"no object {key!r}")
        if status != 200:
            raise StoreError(f"GET {key}: {status}")
        return data, int(headers["x-goog-generation"])

    def stat(self, key: str) -> ObjectMeta | None:
        status, _, data = self._request("GET", self._object_path(key))
        if status == 404:
            return None
        if status != 200:
            raise StoreError(f"stat {key}: {status}")
        return _meta(key, json.loads(data))

    def put(self, key: str, data: bytes, *, if_generation_match: int | None = None) -> int:
        query = f"uploadType=media&name={quote(self._name(key), safe='')}"
        if if_generation_match is not None:
            query += f"&ifGenerationMatch={int(if_generation_match)}"
        status, _, body = self._request(
            "POST",
            f"/upload/storage/v1/b/{self.bucket}/o?{query}",
            data,
            {"Content-Type": "application/octet-stream"},
        )
        if status == 412:
            raise PreconditionFailed(f"conditional write of {key!r} lost its race")
        if status != 200:
            raise StoreError(f"PUT {key}: {status}")
        return int(json.loads(body)["generation"])

    def delete(self, key: str, *, if_generation_match: int | None = None) -> None:
        query = "" if if_generation_match is None else f"?ifGenerationMatch={if_generation_match}"
        status, _, _ = self._request("DELETE", self._object_path(key) + query)
        if status == 412:
            raise PreconditionFailed(f"conditional delete of {key!r} lost its race")
        if status not in (204, 404):
            raise StoreError(f"DELETE {key}: {status}")

    def list(self, prefix: str, *, delimiter: str | None = None) -> Listing:
        full = self._name(prefix)
        objects, prefixes, token = [], [], ""
        while True:
            query = f"prefix={quote(full, safe='')}"
            if delimiter:
                query += f"&delimiter={quote(delimiter, safe='')}"
            if token:
                query += f"&pageToken={quote(token, safe='')}"
            status, _, data = self._request("GET", f"/storage/v1/b/{self.bucket}/o?{query}")
            if status != 200:
                raise StoreError(f"LIST {prefix}: {status}")
            page = json.loads(data)
            cut = len(self.prefix) + 1 if self.prefix else 0
            objects += [_meta(item["name"][cut:], item) for item in page.get("items", [])]
            prefixes += [p[cut:] for p in page.get("prefixes", [])]
            token = page.get("nextPageToken", "")
            if not token:
                return Listing(objects, sorted(prefixes))

    def upload_file(self, key: str, path: Path, *, if_generation_match: int | None = None) -> int:
        return self.put(key, Path(path).read_bytes(), if_generation_match=if_generation_match)

    def download_file(self, key: str, path: Path) -> int:
        data, gen = self.get(key)
        Path(path).write_bytes(data)
        return gen

    def open_read(self, key: str) -> IO[bytes]:
        import io

        return io.BytesIO(self.get(key)[0])


def _meta(key: str, item: dict[str, Any]) -> ObjectMeta:
    return ObjectMeta(key, int(item["generation"]), int(item.get("size", 0)), 0)
