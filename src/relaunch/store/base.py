"""The ObjectStore contract: the single source of truth of relaunch.

A store is a flat namespace of keys (``runs/abc/run.json``) holding bytes. Every
object has a *generation*: a positive integer that changes on every write. Writes
can be conditional on it, exactly like Google Cloud Storage's ``ifGenerationMatch``:

- ``if_generation_match=0``: create-only; fails if the object exists.
- ``if_generation_match=g`` (g > 0): compare-and-swap; fails unless the current
  generation is ``g``.

A failed condition raises :class:`~relaunch.errors.PreconditionFailed`; the caller
re-reads and decides. That single primitive is what leases, queue claims and run
records are built on, so the contract must hold between processes and machines.

This module and every store implementation import only the standard library at
module import time: the runtime inside a job and the CLI load it on every start.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

from relaunch.errors import ObjectNotFound, UserInputError

_KEY_PART = re.compile(r"^[A-Za-z0-9._=+@,%-]+$")


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe store key, else raise.

    Keys are ``/``-separated parts of ``[A-Za-z0-9._=+@,-]``; no part is empty, ``.``
    or ``..``, so a key can never name a path outside the store root.
    """
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") or not _KEY_PART.match(p) for p in parts):
        raise UserInputError(
            f"invalid store key {key!r}",
            hint="keys are '/'-separated names of letters, digits and ._=+@,-",
        )
    return key


@dataclass(frozen=True)
class ObjectMeta:
    """What the store knows about one object without reading it."""

    key: str
    generation: int
    size: int
    updated_ns: int


@dataclass(frozen=True)
class Listing:
    """One ``list`` result: objects directly matched, and 'folders' when a delimiter is used."""

    objects: list[ObjectMeta]
    prefixes: list[str]


@runtime_checkable
class ObjectStore(Protocol):
    """Conditional object storage. See the module docstring for the write conditions."""

    url: str

    def get(self, key: str) -> tuple[bytes, int]:
        """Return ``(data, generation)``; raise ObjectNotFound if absent."""
        ...

    def stat(self, key: str) -> ObjectMeta | None:
        """Return the object's metadata, or None if it does not exist."""
        ...

    def put(self, key: str, data: bytes, *, if_generation_match: int | None = None) -> int:
        """Write ``data`` atomically (readers see old or new, never a mix); return the new
        generation. Raise PreconditionFailed when the condition does not hold."""
        ...

    def delete(self, key: str, *, if_generation_match: int | None = None) -> None:
        """Delete the object. Deleting an absent object is not an error unless a
        generation condition was given, which then fails."""
        ...

    def list(self, prefix: str, *, delimiter: str | None = None) -> Listing:
        """Objects whose key starts with ``prefix``, sorted by key. With ``delimiter="/"``
        keys that have a further ``/`` after the prefix are folded into ``prefixes``."""
        ...

    def upload_file(self, key: str, path: Path, *, if_generation_match: int | None = None) -> int:
        """Stream a local file into the store (large objects; resumable where the
        backend supports it). Atomic like ``put``."""
        ...

    def download_file(self, key: str, path: Path) -> int:
        """Stream an object into a local file (written atomically); return its generation."""
        ...

    def open_read(self, key: str) -> IO[bytes]:
        """A binary stream of the object's current content."""
        ...


def get_json(store: ObjectStore, key: str) -> tuple[Any, int]:
    data, gen = store.get(key)
    return json.loads(data), gen


def get_json_or_none(store: ObjectStore, key: str) -> tuple[Any, int] | tuple[None, int]:
    """``(value, generation)``, or ``(None, 0)`` when absent: 0 is then the create-only
    condition for a follow-up ``put``."""
    try:
        return get_json(store, key)
    except ObjectNotFound:
        return None, 0


def dump_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def put_json(
    store: ObjectStore, key: str, value: Any, *, if_generation_match: int | None = None
) -> int:
    return store.put(key, dump_json(value), if_generation_match=if_generation_match)


def iter_keys(store: ObjectStore, prefix: str) -> Iterator[str]:
    for meta in store.list(prefix).objects:
        yield meta.key
