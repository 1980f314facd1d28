"""Which files an image is made of: the build context after its dockerignore, or the
files its ``inputs`` globs select. One ``lstat`` per file; nothing is read here.

relaunch never sends, nor hashes, ``.git/`` (unless ``include_git``) and its own state
folder ``.relaunch/``: Docker would send ``.git`` unless ignored, but then every
``git fetch`` would change the tag.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
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


class Scan(NamedTuple):
    names: list[str]  # selected entries that are not folders, sorted
    below: list[tuple[str, tuple[bool, ...]]]  # (subfolder name, match flags) to descend
    dirs: list[str]  # (dockerignore) folder paths a tarball must create


class Walker:
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
        self.dropped = 0  # selected names that were not regular files or symlinks

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

    def scan(self, folder: str, rel_prefix: str, parent: tuple[bool, ...]) -> Scan:
        """One folder, without stat'ing its files: the names the rules select (their type
        is checked when they are stat'ed) and the subfolders to descend into. Raises OSError
        when the folder cannot be read."""
        with os.scandir(folder) as it:
            entries = sorted(it, key=_by_name)
        any_of = self.matcher.any_of  # no exceptions: one regex, parents carry one flag
        simple = not self.patterns or (any_of is not None and not parent[0])
        names: list[str] = []
        dirs: list[str] = []
        below: list[tuple[str, tuple[bool, ...]]] = []  # walked after this folder's files
        for entry in entries:
            rel = rel_prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                if entry.name in self.skip or entry.path == self.state:
                    continue
                matched, flags = self._verdict(rel, parent)
                if self.select:
                    if matched or any(flags) or self.matcher.could_match_below(rel):
                        below.append((entry.name, flags))
                elif not matched:
                    dirs.append(rel)
                    below.append((entry.name, flags))
                elif not self.matcher.can_skip_folder(rel):
                    below.append((entry.name, flags))
                continue
            if entry.name in self.skip:
                continue
            if simple:  # the common case, kept lean: one regex call at most
                matched = any_of is not None and any_of.match(rel) is not None
            else:
                matched, flags = self._verdict(rel, parent)
            if matched != self.select:
                continue
            if self.select and any_of is None:
                for i, m in enumerate(flags):
                    if m and not self.patterns[i].exception:
                        self.hits[i] += 1
            names.append(entry.name)
        return Scan(names, below, dirs)

    def walk(self, folder: str, rel_prefix: str, parent: tuple[bool, ...]) -> None:
        try:
            scan = self.scan(folder, rel_prefix, parent)
        except OSError as e:
            raise SpecError(f"cannot read folder {folder}: {e}") from None
        self.dirs.extend(scan.dirs)
        start = len(self.files)
        files = self.files
        for name in scan.names:
            path = os.path.join(folder, name)
            try:
                s = os.lstat(path)
            except FileNotFoundError:
                self.dropped += 1  # removed since the folder was listed
                continue
            if not (S_ISREG(s.st_mode) or S_ISLNK(s.st_mode)):
                self.dropped += 1  # sockets, fifos, devices: Docker cannot COPY them either
                continue
            files.append(
                FileEntry(rel_prefix + name, s.st_size, s.st_mtime_ns, s.st_ino, s.st_mode, path)
            )
        if len(files) > start:
            self.groups.append((rel_prefix, start, len(files)))
        for name, flags in scan.below:
            self.walk(os.path.join(folder, name), rel_prefix + name + "/", flags)


def skip_names(include_git: bool) -> frozenset[str]:
    return frozenset() if include_git else frozenset({".git"})


def context_files(
    context: Path, ignore: Matcher, *, state_dir: Path, include_git: bool = False
) -> FileSet:
    """The files Docker would send for ``context`` with this dockerignore."""
    w = Walker(
        context, ignore, select=False, skip=skip_names(include_git), state=str(state_dir.parent)
    )
    w.walk(str(context), "", (False,) * len(ignore.patterns))
    return FileSet(context, w.files, w.dirs, w.groups)


def input_files(
    root: Path, globs: Matcher, *, state_dir: Path, include_git: bool = False
) -> FileSet:
    """The files under ``root`` the ``inputs`` globs select. A glob that selects nothing
    is a SpecError naming the file that declares it."""
    w = Walker(root, globs, select=True, skip=skip_names(include_git), state=str(state_dir.parent))
    w.walk(str(root), "", (False,) * len(globs.patterns))
    check_globs(globs, root, w.hits, w.dropped > 0, [e.rel for e in w.files])
    return FileSet(root, w.files, [], w.groups)


def check_globs(
    globs: Matcher, root: Path, hits: list[int], recount: bool, rels: Iterable[str]
) -> None:
    """A glob that selects no file is a SpecError naming the file that declares it.
    ``hits`` were counted when names were matched; they are recounted from ``rels`` (the
    files kept) when the fast path did not count them or some names were dropped."""
    rel_list: list[str] | None = None
    for pattern, n in zip(globs.patterns, hits, strict=True):
        if pattern.exception:
            continue
        if globs.any_of is not None or recount:
            rel_list = list(rels) if rel_list is None else rel_list
            n = int(any(pattern.matches(rel) for rel in rel_list))
        if n == 0:
            raise SpecError(
                f"{globs.source}: input glob '{pattern.text}' matches no file under {root}",
                hint="fix the glob or remove it",
            )
