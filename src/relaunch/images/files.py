"""Which files an image is made of: the build context after its dockerignore, or the
files its ``inputs`` globs select. One ``lstat`` per file; nothing is read here.

relaunch never sends, nor hashes, ``.git/`` (unless ``include_git``) and its own state
folder ``.relaunch/``: Docker would send ``.git`` unless ignored, but then every
``git fetch`` would change the tag.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from stat import S_ISLNK, S_ISREG
from typing import NamedTuple

from relaunch.errors import SpecError
from relaunch.images.dockerignore import Matcher

_by_name = attrgetter("name")


class FileEntry(NamedTuple):
    # The first five fields are the entry's stat signature (``e[:5]``) in the cache.
    rel: str  # slash path relative to the walk's base
    size: int
    mtime_ns: int
    ino: int
    mode: int  # st_mode: the type (file or symlink) and permission bits
    path: str  # absolute path


@dataclass
class FileSet:
    """The files of an image and the folders a tarball needs. A folder's files are
    contiguous: ``groups`` holds (folder, start, end) slices of ``files``."""

    base: Path
    files: list[FileEntry]
    dirs: list[str] = field(default_factory=list)
    groups: list[tuple[str, int, int]] = field(default_factory=list)


class _Walker:
    def __init__(
        self, base: Path, matcher: Matcher, *, select: bool, skip: frozenset[str], state: str
    ) -> None:
        self.base = base
        self.matcher = matcher
        self.select = select  # True: keep what matches (inputs); False: drop it (ignore)
        self.skip = skip
        self.state = state
        self.patterns = matcher.patterns
        self.hits = [0] * len(self.patterns)
        self.files: list[FileEntry] = []
        self.dirs: list[str] = []
        self.groups: list[tuple[str, int, int]] = []

    def _verdict(self, rel: str, parent: tuple[bool, ...]) -> tuple[bool, tuple[bool, ...]]:
        """(matched, per-pattern match incl. parents) — moby's MatchesUsingParentResults."""
        if self.matcher.any_of is not None:
            matched = parent[0] or self.matcher.any_of.match(rel) is not None
            return matched, (matched,) * len(parent)
        matched = False
        flags = []
        for i, p in enumerate(self.patterns):
            m = parent[i] or p.match_one(rel)
            flags.append(m)
            if m:
                matched = not p.exception
        return matched, tuple(flags)

    def walk(self, folder: str, rel_prefix: str, parent: tuple[bool, ...]) -> None:
        try:
            it = os.scandir(folder)
        except OSError as e:
            raise SpecError(f"cannot read folder {folder}: {e}") from None
        with it:
            entries = sorted(it, key=_by_name)
        any_of = self.matcher.any_of  # no exceptions: one regex, parents carry one flag
        simple = not self.patterns or (any_of is not None and not parent[0])
        start = len(self.files)
        files = self.files
        below: list[tuple[str, str, tuple[bool, ...]]] = []  # walked after this folder's files
        for entry in entries:
            rel = rel_prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                if entry.name in self.skip or entry.path == self.state:
                    continue
                matched, flags = self._verdict(rel, parent)
                if self.select:
                    if matched or any(flags) or self.matcher.could_match_below(rel):
                        below.append((entry.path, rel, flags))
                elif not matched:
                    self.dirs.append(rel)
                    below.append((entry.path, rel, flags))
                elif not self.matcher.can_skip_folder(rel):
                    below.append((entry.path, rel, flags))
                continue
            if entry.name in self.skip:
                continue
            if simple:  # the common case, kept lean: one regex call at most
                matched = any_of is not None and any_of.match(rel) is not None
            else:
                matched, flags = self._verdict(rel, parent)
            if matched != self.select:
                continue
            s = entry.stat(follow_symlinks=False)
            if not (S_ISREG(s.st_mode) or S_ISLNK(s.st_mode)):
                continue  # sockets, fifos, devices: Docker cannot COPY them either
            if self.select and any_of is None:
                for i, m in enumerate(flags):
                    if m and not self.patterns[i].exception:
                        self.hits[i] += 1
            files.append(FileEntry(rel, s.st_size, s.st_mtime_ns, s.st_ino, s.st_mode, entry.path))
        if len(files) > start:
            self.groups.append((rel_prefix, start, len(files)))
        for path, rel, flags in below:
            self.walk(path, rel + "/", flags)


def _skip_names(include_git: bool) -> frozenset[str]:
    return frozenset() if include_git else frozenset({".git"})


def context_files(
    context: Path, ignore: Matcher, *, state_dir: Path, include_git: bool = False
) -> FileSet:
    """The files Docker would send for ``context`` with this dockerignore."""
    w = _Walker(
        context, ignore, select=False, skip=_skip_names(include_git), state=str(state_dir.parent)
    )
    w.walk(str(context), "", (False,) * len(ignore.patterns))
    return FileSet(context, w.files, w.dirs, w.groups)


def input_files(
    root: Path, globs: Matcher, *, state_dir: Path, include_git: bool = False
) -> FileSet:
    """The files under ``root`` the ``inputs`` globs select. A glob that selects nothing
    is a SpecError naming the file that declares it."""
    w = _Walker(
        root, globs, select=True, skip=_skip_names(include_git), state=str(state_dir.parent)
    )
    w.walk(str(root), "", (False,) * len(globs.patterns))
    for pattern, hits in zip(globs.patterns, w.hits, strict=True):
        if globs.any_of is not None:  # hits were not counted per pattern on the fast path
            hits = int(any(pattern.matches(e.rel) for e in w.files))
        if not pattern.exception and hits == 0:
            raise SpecError(
                f"{globs.source}: input glob '{pattern.text}' matches no file under {root}",
                hint="fix the glob or remove it",
            )
    return FileSet(root, w.files, [], w.groups)
