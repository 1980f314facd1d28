"""Big objects for GCSStore: resumable uploads in chunks, and reads pinned to one
generation (a streamed download, a seekable-free reader).

A resumable upload reads its source one chunk at a time, so a 1 GB checkpoint never
sits in memory. Its conditions (``ifGenerationMatch``) are checked when the session
starts and again when the last chunk commits the object. A chunk whose answer is lost
is sent again; the session says how much it holds and the upload goes on from there.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import IO, Any

from relaunch.errors import ObjectNotFound, StoreError
from relaunch.store.gcs_wire import Wire

_RESUMES = 8  # a download broken this many times in a row gives up


def _next_offset(headers: Any) -> int:
    """Where a resumable session wants the next byte (its ``Range: bytes=0-N``)."""
    span = headers.get("Range") or headers.get("range") or ""
    if not span.startswith("bytes="):
        return 0
    return int(span.rsplit("-", 1)[1]) + 1


def _next_piece(wire: Wire, pieces: Iterator[bytes], where: str) -> bytes | None:
    """The next piece of a streamed body: None at its end, or where the connection broke
    (the caller resumes from there); a StoreError for any other failure."""
    try:
        return next(pieces, None)
    except Exception as e:
        if wire.is_transient(e):
            return None
        raise wire.failure(e, where) from None


def upload_resumable(
    wire: Wire,
    name: str,
    where: str,
    resource: dict[str, Any],
    conditions: dict[str, int],
    source: IO[bytes],
    size: int,
    chunk_size: int,
    own_write: Callable[[], dict[str, Any] | None],
) -> dict[str, Any]:
    """Stream ``size`` bytes of ``source`` into ``name``; return the object's resource.
    ``own_write`` finds the object if a lost answer hid that the last chunk landed."""
    start = wire.call(
        "POST",
        wire.object_path(name, upload=True),
        where=where,
        query={"uploadType": "resumable", "name": name, **conditions},
        body=json.dumps(resource).encode(),
        headers={
            "Content-Type": "application/json; charset=UTF-8",
            "X-Upload-Content-Type": resource.get("contentType", "application/octet-stream"),
            "X-Upload-Content-Length": str(size),
        },
        ok=(200, 201),
        conditional=bool(conditions),
    )
    session = start.headers.get("Location") or start.headers.get("location")
    if not session:
        raise StoreError(f"Cloud Storage gave no upload session for {where} in {wire.url}")
    offset = stalled = 0
    while True:
        source.seek(offset)
        chunk = source.read(min(chunk_size, size - offset))
        last = offset + len(chunk) - 1
        try:
            answer = wire.call(
                "PUT",
                session,
                where=where,
                body=chunk,
                headers={"Content-Range": f"bytes {offset}-{last}/{size}"},
                ok=(200, 201, 308),
                conditional=bool(conditions),
            )
        except (ObjectNotFound, StoreError) as e:
            # The session is gone: the last chunk landed and its answer was lost, or the
            # session expired. Our write id in the object's metadata tells which.
            mine = own_write()
            if mine is not None:
                return mine
            if isinstance(e, ObjectNotFound):
                raise StoreError(
                    f"the upload session of {where} in {wire.url} expired",
                    hint="the next write starts a new one",
                ) from None
            raise
        if answer.status in (200, 201):
            resource_out: dict[str, Any] = answer.json()
            return resource_out
        held = _next_offset(answer.headers)  # what the session holds: go on from there
        stalled = 0 if held > offset else stalled + 1
        offset = held
        if stalled >= _RESUMES:
            raise StoreError(f"the upload of {where} to {wire.url} makes no progress")


def download(wire: Wire, name: str, where: str, out: IO[bytes]) -> int:
    """Write the object's current content to ``out``; return its generation. A broken
    connection resumes where it stopped, on the same generation (never a mix of two)."""
    path = wire.object_path(name)
    answer = wire.call("GET", path, where=where, query={"alt": "media"}, stream=True)
    generation = answer.generation()
    total = int(
        answer.headers.get("x-goog-stored-content-length")
        or answer.headers.get("Content-Length")
        or -1
    )
    written = 0
    for _ in range(_RESUMES):
        raw = answer.raw
        pieces = raw.stream(1 << 20)
        try:
            while (piece := _next_piece(wire, pieces, where)) is not None:
                out.write(piece)  # a local disk that fails is not the connection's fault
                written += len(piece)
        finally:
            raw.release_conn()
        if total < 0 or written >= total:
            return generation
        try:
            answer = wire.call(
                "GET",
                path,
                where=where,
                query={"alt": "media", "generation": generation},
                headers={"Range": f"bytes={written}-"},
                ok=(206,),
                stream=True,
            )
        except ObjectNotFound:
            raise ObjectNotFound(f"{where} in {wire.url} was replaced while read") from None
    raise StoreError(f"the download of {where} from {wire.url} kept breaking off")


class PinnedReader(io.RawIOBase):
    """Reads one generation of an object by ranges: if the object is replaced while it
    is read, reading raises ObjectNotFound instead of mixing two versions."""

    def __init__(self, wire: Wire, name: str, where: str, generation: int, size: int) -> None:
        super().__init__()
        self.wire, self.name, self.where = wire, name, where
        self.generation, self.size, self.pos = generation, size, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self.pos >= self.size or not len(view):
            return 0
        last = min(self.size, self.pos + len(view)) - 1
        try:
            answer = self.wire.call(
                "GET",
                self.wire.object_path(self.name),
                where=self.where,
                query={"alt": "media", "generation": self.generation},
                headers={"Range": f"bytes={self.pos}-{last}"},
                ok=(200, 206),
            )
        except ObjectNotFound:
            raise ObjectNotFound(
                f"{self.where} in {self.wire.url} was replaced while read"
            ) from None
        data = answer.body[: len(view)]
        view[: len(data)] = data
        self.pos += len(data)
        return len(data)
