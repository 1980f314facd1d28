"""The files of each image, with their digests, from the stat cache and a walk shared
between worker processes and the caller.

Warm (nothing changed) the work per folder is one ``lstat`` of the folder and one per
file, compared in the workers with the folder's cached signature and packed stats: a
folder that matches comes back as one number, and its encoded tag records are reused as
one bytes object. No per-file Python object is made here for such a folder. A folder
that changed is walked again (dockerignore rules and all) here; its files, and those whose
stats changed, are stat'ed and hashed in the workers. Cold, the walk runs here while the
workers stat and hash what it has found so far.
"""

from __future__ import annotations

import marshal
from collections.abc import Iterator, Mapping
from typing import Any

from relaunch.errors import SpecError
from relaunch.images._statworker import dir_signature, stats_blob
from relaunch.images.dockerignore import Matcher
from relaunch.images.files import Walker, check_globs
from relaunch.images.hashing import file_record, parse_records
from relaunch.images.pool import TaskPool
from relaunch.images.statcache import Entry, StatCache

_UNTRUSTED = 1 << 62  # "newest mtime" of an entry that must never be trusted


class View:
    """One image's file selection: a walker over ``base`` (dockerignore or ``inputs``
    globs) and the key of its entries in the stat cache."""

    def __init__(self, key: str, base: str, walker: Walker, globs: Matcher | None) -> None:
        self.key = key
        self.base = base
        self.walker = walker
        self.globs = globs  # set for ``inputs`` views: a glob must select a file

    def path(self, rel: str) -> str:
        return self.base + "/" + rel[:-1] if rel else self.base


class FileDigests(Mapping[str, str]):
    """path → "kind:digest" of an image's files, decoded from the tag records only when
    asked for (an up-to-date plan never needs them)."""

    def __init__(self, records: list[bytes]) -> None:
        self.records = records
        self._map: dict[str, str] | None = None

    def _get(self) -> dict[str, str]:
        if self._map is None:
            self._map = {rel: kd for r in self.records for rel, kd in parse_records(r)}
        return self._map

    def __getitem__(self, key: str) -> str:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


class _Run:
    """One view's pass: which folders are reused, rescanned, rehashed."""

    def __init__(
        self, view: View, cache: StatCache | None, seen: dict[str, dict[str, tuple[Any, ...]]]
    ):
        self.view = view
        self.old: dict[str, Entry] = cache.view(view.key) if cache is not None else {}
        self.limit = cache.trust_limit() if cache is not None else 0
        self.status: dict[str, int] = {}
        self.new: dict[str, Entry] = {}
        self.order: list[str] = []
        self.seen = seen  # folder path + '/' → name → row hashed in this run
        self.all_hits = True

    def verify(self, pool: TaskPool) -> None:
        for rel, (_flags, dirsig, names, stats, newest, _rec, _below) in self.old.items():
            cost = names.count("\0") + 4 if names else 4

            def done(code: int, rel: str = rel) -> None:
                self.status[rel] = code

            # A folder modified within a timestamp tick of the cache's write may have
            # changed again since without its mtime showing it: list it again.
            sig = dirsig if dirsig is not None and dirsig[0] < self.limit else None
            task = ("v", self.view.path(rel), sig, names, stats, newest < self.limit)
            pool.submit(task, cost, done)

    def walk(self, pool: TaskPool, rel: str, flags: tuple[bool, ...]) -> None:
        self.order.append(rel)
        e = self.old.get(rel)
        code = self.status.get(rel, 2) if e is not None and e[0] == flags else 2
        path = self.view.path(rel)
        if code == 0 and e is not None:
            self.new[rel] = e
            below = e[6]
        else:
            self.all_hits = False
            if code == 1 and e is not None:  # the same entries: their stats changed
                names, dirsig, below = e[2].split("\0") if e[2] else [], e[1], e[6]
            else:
                dirsig = dir_signature(path)  # before the listing: a change after it shows
                try:
                    scan = self.view.walker.scan(path, rel, flags)
                except OSError as err:
                    raise SpecError(f"cannot read folder {path}: {err}") from None
                names, below = scan.names, tuple(scan.below)
            self._hash(pool, rel, path, flags, dirsig, names, below, e)
        pool.pump(block=False)
        for name, child_flags in below:
            self.walk(pool, f"{rel}{name}/", child_flags)

    def _known(self, rel: str, path: str, e: Entry | None) -> dict[str, tuple[Any, ...]]:
        """Digests that may be reused by name: the cache's trusted ones (not modified
        within a timestamp tick of the cache's write) and this run's for other images."""
        known: dict[str, tuple[Any, ...]] = {}
        if e is not None and e[2]:
            stats = marshal.loads(e[3])
            kds = dict(parse_records(e[5]))
            for k, name in enumerate(e[2].split("\0")):
                kd = kds.get(rel + name)
                if kd is not None and stats[5 * k + 1] < self.limit:
                    known[name] = (*stats[5 * k : 5 * k + 5], kd)
        if self.seen:
            base = path + "/"
            for name, row in self.seen.get(base, {}).items():
                known[name] = row
        return known

    def _hash(
        self,
        pool: TaskPool,
        rel: str,
        path: str,
        flags: tuple[bool, ...],
        dirsig: tuple[int, int, int] | None,
        names: list[str],
        below: tuple[tuple[str, tuple[bool, ...]], ...],
        e: Entry | None,
    ) -> None:
        def done(result: tuple[list[tuple[Any, ...]], list[tuple[str, str]]]) -> None:
            rows, errors = result
            if errors:
                name, msg = errors[0]
                raise SpecError(f"cannot read {path}/{name}: {msg}")
            values: list[int] = []
            newest = 0
            records = []
            mine = self.seen.setdefault(path + "/", {})
            for name, size, mtime, ctime, ino, mode, kd in rows:
                values += (size, mtime, ctime, ino, mode)
                newest = max(newest, mtime)
                if kd is not None:
                    records.append(file_record(rel + name, kd))
                    mine[name] = (size, mtime, ctime, ino, mode, kd)
            if len(rows) < len(names):
                newest = _UNTRUSTED  # a name vanished: look again next time
            kept = "\0".join([r[0] for r in rows])
            self.new[rel] = (
                flags,
                dirsig,
                kept,
                stats_blob(values),
                newest,
                b"".join(records),
                below,
            )

        cost = 8 * len(names) + 4
        pool.submit(("h", path, names, self._known(rel, path, e)), cost, done)

    def records(self) -> list[bytes]:
        return [self.new[rel][5] for rel in self.order]


def hash_views(views: list[View], cache: StatCache | None, pool: TaskPool) -> list[FileDigests]:
    """Each view's files and digests, in the order the tag hashes them: a folder's files
    (sorted by name), then its subfolders. Files shared by several views are read once.
    ``pool`` is the caller's: its workers may already be starting."""
    seen: dict[str, dict[str, tuple[Any, ...]]] = {}
    runs = [_Run(v, cache, seen) for v in views]
    out: list[FileDigests] = []
    # Roughly a file per folder entry's names, known before any task is built.
    pool.expect(sum(len(e[2]) // 8 for run in runs for e in run.old.values()))
    for run in runs:
        run.verify(pool)
    pool.drain()
    for run in runs:  # one view after the other: a file hashed for one is reused
        patterns = run.view.walker.patterns
        run.walk(pool, "", (False,) * len(patterns))
        pool.drain()
        digests = FileDigests(run.records())
        if run.view.globs is not None and not run.all_hits:
            check_globs(run.view.globs, run.view.walker.base, [0] * len(patterns), True, digests)
        if cache is not None:
            cache.put_view(run.view.key, run.new)
        out.append(digests)
    return out
