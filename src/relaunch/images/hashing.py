"""Content digests of files, a stat cache so an unchanged tree is not re-read, and the
image tag.

The tag is SHA-256 over (in this order, each field length-delimited): a format version,
the Dockerfile's bytes, the build args and platform, the parent's tag, and for every
input file its path, whether it is executable or a symlink, and its content digest.
Times, owners and files outside the inputs do not count; uncommitted edits do.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat as st
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from relaunch.images.files import FileEntry

TAG_FORMAT = b"relaunch-image-tag/1"
_CHUNK = 1 << 20
# Entries modified this close to (or after) the cache's own write are not trusted: a file
# rewritten within one timestamp tick of being hashed keeps its mtime (git's "racy" case).
_RACY_NS = 1_000_000_000


def _read_digest(path: str, size: int) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        if size <= _CHUNK:
            # One read for small files; loop in case the file grew since the stat.
            while chunk := os.read(fd, max(size, 1) + 1):
                h.update(chunk)
        else:
            buf = bytearray(_CHUNK)
            view = memoryview(buf)
            with os.fdopen(os.dup(fd), "rb", buffering=0) as f:
                while n := f.readinto(buf):
                    h.update(view[:n])
    finally:
        os.close(fd)
    return h.hexdigest()


def file_digest(entry: FileEntry) -> str:
    """SHA-256 of a file's bytes, or of a symlink's target text (links are not followed)."""
    if st.S_ISLNK(entry.mode):
        return hashlib.sha256(b"symlink\0" + os.fsencode(os.readlink(entry.path))).hexdigest()
    return _read_digest(entry.path, entry.size)


class StatCache:
    """(path, size, mtime, inode) → digest, in a JSON file written atomically.

    Keys are paths relative to ``root`` when under it. Only a changed cache is written.
    """

    VERSION = 1

    def __init__(self, path: Path, root: Path) -> None:
        self.path = path
        self._root = str(root) + os.sep
        self._entries: dict[str, list[object]] = {}
        self._written_ns = 0
        self._dirty = False
        self._load()

    def _load(self) -> None:
        try:
            doc = json.loads(self.path.read_bytes())
            if doc.get("version") == self.VERSION:
                self._entries = doc["entries"]
                self._written_ns = int(doc["written_ns"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self._entries = {}  # a missing or damaged cache only costs a re-read

    def _key(self, path: str) -> str:
        return path[len(self._root) :] if path.startswith(self._root) else path

    def get(self, e: FileEntry) -> str | None:
        hit = self._entries.get(self._key(e.path))
        if (
            hit is not None
            and hit[0] == e.size
            and hit[1] == e.mtime_ns
            and hit[2] == e.ino
            and e.mtime_ns < self._written_ns - _RACY_NS
        ):
            return hit[3]  # type: ignore[return-value]
        return None

    def put(self, e: FileEntry, digest: str) -> None:
        self._entries[self._key(e.path)] = [e.size, e.mtime_ns, e.ino, digest]
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"version": self.VERSION, "written_ns": time.time_ns(), "entries": self._entries}
        fd, tmp = tempfile.mkstemp(prefix=".stat-cache-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, separators=(",", ":"))
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._dirty = False


def digest_all(
    entries: Iterable[FileEntry], cache: StatCache | None, *, workers: int | None = None
) -> dict[str, str]:
    """Absolute path → digest for every entry; cache misses are read on a thread pool
    (hashlib and file reads release the GIL)."""
    out: dict[str, str] = {}
    todo: list[FileEntry] = []
    for e in entries:
        if e.path in out:
            continue
        hit = cache.get(e) if cache is not None else None
        if hit is None:
            todo.append(e)
            out[e.path] = ""
        else:
            out[e.path] = hit
    if todo:
        n = workers or min(8, 2 * (os.cpu_count() or 1))
        if n <= 1 or len(todo) < 8:
            digests = [file_digest(e) for e in todo]
        else:
            # Big files first so one late giant does not leave the other threads idle.
            todo.sort(key=lambda e: -e.size)
            with ThreadPoolExecutor(max_workers=n, thread_name_prefix="relaunch-hash") as pool:
                digests = list(pool.map(file_digest, todo, chunksize=16))
        for e, d in zip(todo, digests, strict=False):
            out[e.path] = d
            if cache is not None:
                cache.put(e, d)
    return out


def _field(h: hashlib._Hash, label: str, value: bytes) -> None:
    h.update(label.encode() + b"\0" + str(len(value)).encode() + b"\0" + value)


def file_kind(e: FileEntry) -> str:
    if st.S_ISLNK(e.mode):
        return "l"
    return "x" if e.mode & 0o111 else "f"


def compute_tag(
    *,
    dockerfile: bytes,
    args: dict[str, str],
    platform: str,
    parent_tag: str | None,
    files: Iterable[tuple[str, str, str]],
    length: int,
) -> str:
    """The image tag: ``length`` hex digits. ``files`` yields (path, kind, digest)."""
    h = hashlib.sha256()
    h.update(TAG_FORMAT)
    _field(h, "dockerfile", dockerfile)
    for k in sorted(args):
        _field(h, "arg", f"{k}={args[k]}".encode())
    _field(h, "platform", platform.encode())
    _field(h, "parent", (parent_tag or "").encode())
    for rel, kind, digest in files:
        _field(h, "file", f"{rel}\0{kind}\0{digest}".encode())
    return h.hexdigest()[:length]
