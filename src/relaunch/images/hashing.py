"""Content digests of files, a stat cache so an unchanged tree is not re-read, and the
image tag.

The tag is SHA-256 over (in this order, each field length-delimited): a format version,
the Dockerfile's bytes, the build args and platform, the parent's tag, and for every
input file its path, whether it is executable or a symlink, and its content digest.
Times, owners and files outside the inputs do not count; uncommitted edits do.

Speed: the cache is kept per folder — a folder whose files all have the same (path,
size, mtime, inode, mode) as last time reuses its digests *and* its encoded tag records
in one comparison. Cold hashing of a big tree runs in worker processes (threads are
slower: reading many small files is GIL-bound).
"""

from __future__ import annotations

import hashlib
import marshal
import os
import stat as st
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from relaunch.errors import SpecError
from relaunch.images import _hashworker
from relaunch.images.files import FileEntry, FileSet

TAG_FORMAT = b"relaunch-image-tag/1"
# Entries modified this close to (or after) the cache's own write are not trusted: a file
# rewritten within one timestamp tick of being hashed keeps its mtime (git's "racy" case).
_RACY_NS = 1_000_000_000
# Below this much work, worker processes cost more than they save.
_POOL_MIN_BYTES = 64 << 20
_POOL_MIN_FILES = 4000


def file_digest(entry: FileEntry) -> str:
    """SHA-256 of a file's bytes, or of a symlink's target text (links are not followed)."""
    try:
        if st.S_ISLNK(entry.mode):
            target = os.fsencode(os.readlink(entry.path))
            return hashlib.sha256(b"symlink\0" + target).hexdigest()
        return _hashworker.digest(os.fsencode(entry.path))
    except OSError as e:
        raise SpecError(f"cannot read {entry.path}: {e.strerror or e}") from None


def _worker_digests(paths: list[str]) -> list[str]:
    """Digests from one worker process (see ``_hashworker``)."""
    proc = subprocess.run(
        [sys.executable, "-I", "-S", _hashworker.__file__],
        input=b"\0".join(os.fsencode(p) for p in paths),
        capture_output=True,
        check=False,
    )
    lines = proc.stdout.decode().splitlines()
    if proc.returncode != 0 or len(lines) != len(paths):
        raise SpecError(f"hashing worker failed: {proc.stderr.decode(errors='replace')[-300:]}")
    for path, line in zip(paths, lines, strict=True):
        if line.startswith("!"):
            raise SpecError(f"cannot read {path}: {line[1:]}")
    return lines


def digest_entries(entries: Sequence[FileEntry], *, workers: int | None = None) -> list[str]:
    """Digests of ``entries``, in order. A big job is split over worker processes: on
    many small files, threads are slower than one thread (the GIL), processes are not."""
    # Two workers per core: while one waits on a read, the other hashes.
    n = workers if workers is not None else 2 * (os.cpu_count() or 1)
    total = sum(e.size for e in entries)
    if n <= 1 or (total < _POOL_MIN_BYTES and len(entries) < _POOL_MIN_FILES):
        return [file_digest(e) for e in entries]
    regular = [i for i, e in enumerate(entries) if not st.S_ISLNK(e.mode)]
    out = [file_digest(e) if st.S_ISLNK(e.mode) else "" for e in entries]
    shares = [regular[k::n] for k in range(n)]  # interleaved: sizes even out
    with ThreadPoolExecutor(max_workers=n) as pool:  # threads only wait on the workers
        results = pool.map(lambda idx: _worker_digests([entries[i].path for i in idx]), shares)
        for idx, digests in zip(shares, results, strict=True):
            for i, d in zip(idx, digests, strict=True):
                out[i] = d
    return out


def file_kind(e: FileEntry) -> str:
    if st.S_ISLNK(e.mode):
        return "l"
    return "x" if e.mode & 0o111 else "f"


def _field(label: str, value: bytes) -> bytes:
    return label.encode() + b"\0" + str(len(value)).encode() + b"\0" + value


def _file_record(rel: str, kind_digest: str) -> bytes:
    kind, _, digest = kind_digest.partition(":")
    return _field("file", f"{rel}\0{kind}\0{digest}".encode())


Sig = tuple[tuple[Any, ...], ...]  # per file: (rel, size, mtime_ns, ino, mode)


class StatCache:
    """Per folder: the stat signature of its files, their "kind:digest" strings and
    their encoded tag records. One marshal file, written atomically, only when changed.
    Tied to the Python version (marshal's format); a mismatch or damage means re-read."""

    VERSION = 2

    def __init__(self, path: Path) -> None:
        self.path = path
        self._dirs: dict[str, tuple[Sig, tuple[str, ...], bytes, int]] = {}
        self._written_ns = 0
        self._dirty = False
        self._load()

    def _load(self) -> None:
        try:
            doc = marshal.loads(self.path.read_bytes())
            if doc["version"] == (self.VERSION, *sys.version_info[:2]):
                self._dirs = doc["dirs"]
                self._written_ns = int(doc["written_ns"])
        except (OSError, EOFError, ValueError, TypeError, KeyError):
            self._dirs = {}

    def _trusted(self, newest_mtime: int) -> bool:
        return newest_mtime < self._written_ns - _RACY_NS

    def folder(self, key: str, sig: Sig) -> tuple[tuple[str, ...], bytes] | None:
        """The folder's digests and records, when every file is as it was."""
        hit = self._dirs.get(key)
        if hit is not None and hit[0] == sig and self._trusted(hit[3]):
            return hit[1], hit[2]
        return None

    def files(self, key: str) -> dict[str, tuple[tuple[Any, ...], str]]:
        """rel → (signature, "kind:digest") of a folder's trusted files, for a folder that
        changed only in part."""
        hit = self._dirs.get(key)
        if hit is None:
            return {}
        return {s[0]: (s, kd) for s, kd in zip(hit[0], hit[1], strict=True) if self._trusted(s[2])}

    def put(self, key: str, sig: Sig, kinds_digests: tuple[str, ...], records: bytes) -> None:
        newest = max((s[2] for s in sig), default=0)
        self._dirs[key] = (sig, kinds_digests, records, newest)
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "version": (self.VERSION, *sys.version_info[:2]),
            "written_ns": time.time_ns(),
            "dirs": self._dirs,
        }
        fd, tmp = tempfile.mkstemp(prefix=".stat-cache-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(marshal.dumps(doc))
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._dirty = False


class HashedFiles:
    """What the tag needs from a FileSet: paths, "kind:digest" strings, encoded records."""

    def __init__(self) -> None:
        self.rels: list[str] = []
        self.kinds_digests: list[str] = []
        self.records: list[bytes] = []

    def as_dict(self) -> dict[str, str]:
        return dict(zip(self.rels, self.kinds_digests, strict=True))


def hash_filesets(
    sets: list[tuple[str, FileSet]], cache: StatCache | None, *, workers: int | None = None
) -> list[HashedFiles]:
    """Hash each (cache key prefix, FileSet); a file in several sets is read once."""
    pending: dict[str, FileEntry] = {}
    plans: list[list[tuple[str, list[FileEntry], Sig, Any, dict[str, Any]]]] = []
    for prefix, fs in sets:
        groups = []
        for folder, a, b in fs.groups:
            entries = fs.files[a:b]
            sig: Sig = tuple([e[:5] for e in entries])
            key = f"{prefix}\0{folder}"
            hit = cache.folder(key, sig) if cache is not None else None
            old: dict[str, Any] = {}
            if hit is None:
                old = cache.files(key) if cache is not None else {}
                for e in entries:
                    o = old.get(e.rel)
                    if o is None or o[0] != e[:5]:
                        pending[e.path] = e
            groups.append((key, entries, sig, hit, old))
        plans.append(groups)
    todo = list(pending.values())
    fresh = dict(zip([e.path for e in todo], digest_entries(todo, workers=workers), strict=True))
    out: list[HashedFiles] = []
    for groups in plans:
        result = HashedFiles()
        for key, entries, sig, hit, old in groups:
            if hit is not None:
                kds, records = hit
            else:
                kds = tuple(
                    f"{file_kind(e)}:{fresh[e.path]}" if e.path in fresh else old[e.rel][1]
                    for e in entries
                )
                records = b"".join(
                    _file_record(e.rel, kd) for e, kd in zip(entries, kds, strict=True)
                )
                if cache is not None:
                    cache.put(key, sig, kds, records)
            result.rels.extend([s[0] for s in sig])
            result.kinds_digests.extend(kds)
            result.records.append(records)
        out.append(result)
    return out


def compute_tag(
    *,
    dockerfile: bytes,
    args: dict[str, str],
    platform: str,
    parent_tag: str | None,
    file_records: list[bytes],
    length: int,
) -> str:
    """The image tag: ``length`` hex digits. ``file_records`` come from hash_filesets."""
    h = hashlib.sha256()
    h.update(TAG_FORMAT)
    h.update(_field("dockerfile", dockerfile))
    for k in sorted(args):
        h.update(_field("arg", f"{k}={args[k]}".encode()))
    h.update(_field("platform", platform.encode()))
    h.update(_field("parent", (parent_tag or "").encode()))
    for records in file_records:
        h.update(records)
    return h.hexdigest()[:length]
