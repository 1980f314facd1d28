"""Cloud Storage operations as Google bills them, counted by class and by kind: the one
classification of the benchmarks that count an agent's store calls — in process, by
wrapping its store (``CountingStore``, agent_scale.py), or at the fake cloud, by the
requests it serves (``request_op``, _fleet_gcs.py).

Classes (Standard storage; Google's published prices per 10,000 operations): A — writes,
uploads, patches, listings ($0.05); B — reads of data or metadata ($0.004); deletes are
free. A *kind* is an operation on a family of keys, ids replaced by ``*``:
``get live/*/heartbeat.json``, ``list live/``, ``put agents/*.json``.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from relaunch.runs import keys
from relaunch.store.base import Listing, ObjectMeta, ObjectStore

PRICE = {"A": 0.05, "B": 0.004}

#: The class of each ObjectStore call (one request each on a gs:// store).
STORE_CALL_CLASS = {
    "get": "B",
    "stat": "B",
    "open_read": "B",
    "download_file": "B",
    "put": "A",
    "upload_file": "A",
    "list": "A",
    "delete": "free",
}

_KINDS = [
    (re.compile(r"^(runs|live|ended)/[^/]+"), r"\1/*"),
    (re.compile(r"^agents/[^/]+\.json$"), "agents/*.json"),
    (re.compile(r"^queues/[^/]+/"), "queues/*/"),
    (re.compile(r"^queues/\*/(?!bell$)[^/]+$"), "queues/*/*"),
    (re.compile(r"/(attempts|logs)/\d+"), r"/\1/*"),
    (re.compile(r"/events/[^/]+$"), "/events/*"),
    (re.compile(r"/checkpoints/(?!LATEST$).+$"), "/checkpoints/*"),
]


def key_kind(key: str) -> str:
    """A key (or a listing's prefix) with its ids replaced by ``*``."""
    for pattern, repl in _KINDS:
        key = pattern.sub(repl, key)
    return key


def usd(ops: Mapping[str, float]) -> float:
    """Dollars for operations counted by class (``{"A": n, "B": n, …}``)."""
    return sum(ops.get(c, 0) / 10_000 * PRICE[c] for c in PRICE)


# -- at the fake cloud: JSON API requests -----------------------------------------------

_LIST = re.compile(r"^/storage/v1/b/[^/]+/o$")
_OBJECT = re.compile(r"^/(?P<download>download/)?storage/v1/b/[^/]+/o/(?P<name>.+)$")
_UPLOAD = re.compile(r"^/upload/storage/v1/b/[^/]+/o$")


def request_op(
    method: str, path: str, query: Mapping[str, str], named: str | None = None
) -> tuple[str, str, str | None]:
    """``(class, operation, object name or listing prefix)`` of one Cloud Storage JSON
    API request; ``named``: the object a write answered with (a multipart upload names
    its object in the body)."""
    if method == "DELETE":
        match = _OBJECT.match(path)
        return "free", "delete", match.group("name") if match else None
    if method in ("GET", "HEAD"):
        if _LIST.match(path):
            return "A", "list", query.get("prefix", "")  # objects.list is class A
        match = _OBJECT.match(path)
        if match is None:
            return "B", "get-bucket", None
        media = match.group("download") or query.get("alt") == "media"
        return "B", "get" if media else "stat", match.group("name")
    if _UPLOAD.match(path):
        return "A", "put", named or query.get("name")
    match = _OBJECT.match(path)
    return "A", method.lower(), match.group("name") if match else named


# -- in process: a store whose calls are counted ----------------------------------------


class CountingStore:
    """An ObjectStore whose calls are counted by class (``ops``) and by kind (``kinds``,
    ``"<class> <call> <key kind>"``)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.ops: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()

    def clear(self) -> None:
        self.ops.clear()
        self.kinds.clear()

    def _count(self, call: str, key: str) -> None:
        cls = STORE_CALL_CLASS[call]
        self.ops[cls] += 1
        self.kinds[f"{cls} {call} {key_kind(key)}"] += 1

    def get(self, key: str) -> tuple[bytes, int]:
        self._count("get", key)
        return self.inner.get(key)

    def stat(self, key: str) -> ObjectMeta | None:
        self._count("stat", key)
        return self.inner.stat(key)

    def put(self, key: str, data: bytes, *, if_generation_match: int | None = None) -> int:
        self._count("put", key)
        return self.inner.put(key, data, if_generation_match=if_generation_match)

    def delete(self, key: str, *, if_generation_match: int | None = None) -> None:
        self._count("delete", key)
        self.inner.delete(key, if_generation_match=if_generation_match)

    def list(self, prefix: str, *, delimiter: str | None = None) -> Listing:
        self._count("list", prefix)
        return self.inner.list(prefix, delimiter=delimiter)

    def upload_file(self, key: str, path: Path, *, if_generation_match: int | None = None) -> int:
        self._count("upload_file", key)
        return self.inner.upload_file(key, path, if_generation_match=if_generation_match)

    def download_file(self, key: str, path: Path) -> int:
        self._count("download_file", key)
        return self.inner.download_file(key, path)

    def open_read(self, key: str) -> IO[bytes]:
        self._count("open_read", key)
        return self.inner.open_read(key)


def plain_read(root: Path, run_ids: list[str]) -> float:
    """Baseline of the agent benchmarks: seconds to read, with plain ``open()``, the
    objects of every run that a tick looks at (run record, attempt, heartbeat)."""
    started = time.perf_counter()
    for rid in run_ids:
        for key in (keys.run_key(rid), keys.attempt_key(rid, 1), keys.heartbeat_key(rid)):
            try:
                (root / key).read_bytes()
            except FileNotFoundError:
                pass
    return time.perf_counter() - started
