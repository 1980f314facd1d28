"""The stat cache: per image selection and folder, what the folder held when it was last
hashed, so an unchanged tree is not re-read.

An entry is (match flags, folder signature, names, packed stats, newest mtime, tag records,
subfolders): the folder's own (mtime_ns, ctime_ns, inode) taken before it was listed
(an entry added, removed or renamed in it changes them), the NUL-joined names of its
selected files, their (size, mtime_ns, ctime_ns, inode, mode) packed by
``_statworker.stats_blob``, the newest of their mtimes, their encoded tag records, and
the subfolders the walk descends into with their match flags. Everything is a few bytes
objects per folder, so loading the cache makes no object per file.

An entry is trusted only when its newest file was modified more than a timestamp tick
(counted as a second) before the run that wrote the cache started: a file rewritten
within one tick of being hashed can keep its mtime (git's "racy" case), and such a file
is read again.
"""

from __future__ import annotations

import marshal
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

Entry = tuple[Any, ...]  # see the module docstring

RACY_NS = 1_000_000_000
# About what one file takes in the cache: its name, packed stats and tag record (a
# 64-digit digest). Only an estimate of the work to come, made before loading it.
_BYTES_PER_FILE = 160


class StatCache:
    """One marshal file, written atomically and only when something changed. Tied to
    the Python version (marshal's format); a mismatch or damage means re-read."""

    VERSION = 5

    def __init__(self, path: Path) -> None:
        self.path = path
        self._views: dict[str, dict[str, Entry]] = {}
        self._written_ns = 0
        self._dirty = False
        # Entries written now are trusted relative to this: every stat and read of this
        # run happens after it (the time of the write would trust a file modified right
        # after it was read, in the same timestamp tick, when the run is long).
        self._started_ns = time.time_ns()
        self._load()

    def _load(self) -> None:
        try:
            doc = marshal.loads(self.path.read_bytes())
            if doc["version"] == (self.VERSION, *sys.version_info[:2]):
                self._views = doc["views"]
                self._written_ns = int(doc["written_ns"])
        except (OSError, EOFError, ValueError, TypeError, KeyError):
            self._views = {}

    @staticmethod
    def expected_files(path: Path) -> int:
        """About how many files the cache at ``path`` holds, from its size alone."""
        try:
            return os.stat(path).st_size // _BYTES_PER_FILE
        except OSError:
            return 0

    def trust_limit(self) -> int:
        """An entry whose newest file mtime is below this may be trusted."""
        return self._written_ns - RACY_NS

    def view(self, key: str) -> dict[str, Entry]:
        return self._views.get(key, {})

    def put_view(self, key: str, entries: dict[str, Entry]) -> None:
        old = self._views.get(key, {})
        if len(old) != len(entries) or any(old.get(k) is not e for k, e in entries.items()):
            self._views[key] = entries
            self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "version": (self.VERSION, *sys.version_info[:2]),
            "written_ns": self._started_ns,
            "views": self._views,
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
