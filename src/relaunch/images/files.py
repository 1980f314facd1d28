"""Which files an image is made of: the build context after its dockerignore, or the
files its ``inputs`` globs select. One ``lstat`` per file; nothing is read here.

relaunch never sends, nor hashes, ``.git/`` (unless ``include_git``) and its own state
folder ``.relaunch/``: Docker would send ``.git`` unless ignored, but then every
``git fetch`` would change the tag.
"""

from __future__ import annotations

import os
import stat as st
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from relaunch.errors import SpecError
from relaunch.images.dockerignore import Matcher


class FileEntry(NamedTuple):
    rel: str  # slash path relative to the walk's base
    path: str  # absolute path
    size: int
    mtime_ns: int
    ino: int
    mode: int  # st_mode: the type (file or symlink) and permission bits


@dataclass
class FileSet:
    """The files of an image, sorted by ``rel``, and the folders a tarball needs."""

    base: Path
    files: list[FileEntry]
    dirs: list[str] = field(default_factory=list)


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

    def _verdict(self, rel: str, parent: tuple[bool, ...]) -> tuple[bool, tuple[bool, ...]]:
        """(matched, per-pattern match incl. parents) — moby's MatchesUsingParentResults."""
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
            entries = sorted(it, key=lambda e: e.name)
        no_patterns = not self.patterns
        for entry in entries:
            name = entry.name
            rel = rel_prefix + name
            if name in self.skip or entry.path == self.state:
                continue
            if no_patterns:
                matched, flags = False, parent
            else:
                matched, flags = self._verdict(rel, parent)
            if entry.is_dir(follow_symlinks=False):
                if self.select:
                    if matched or self.matcher.could_match_below(rel) or any(flags):
                        self.walk(entry.path, rel + "/", flags)
                elif not matched:
                    self.dirs.append(rel)
                    self.walk(entry.path, rel + "/", flags)
                elif not self.matcher.can_skip_folder(rel):
                    self.walk(entry.path, rel + "/", flags)
                continue
            if matched != self.select:
                continue
            s = entry.stat(follow_symlinks=False)
            if not (st.S_ISREG(s.st_mode) or st.S_ISLNK(s.st_mode)):
                continue  # sockets, fifos, devices: Docker cannot COPY them either
            if self.select:
                for i, m in enumerate(flags):
                    if m and not self.patterns[i].exception:
                        self.hits[i] += 1
            self.files.append(
                FileEntry(rel, entry.path, s.st_size, s.st_mtime_ns, s.st_ino, s.st_mode)
            )


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
    return FileSet(context, w.files, w.dirs)


def input_files(
    root: Path, globs: Matcher, *, state_dir: Path, include_git: bool = False
) -> FileSet:
    """The files under ``root`` the ``inputs`` globs select. A glob that selects nothing
    is a SpecError naming the file that declares it."""
    w = _Walker(
        root, globs, select=True, skip=_skip_names(include_git), state=str(state_dir.parent)
    )
    w.walk(str(root), "", (False,) * len(globs.patterns))
    for pattern, hits in zip(globs.patterns, w.hits, strict=False):
        if not pattern.exception and hits == 0:
            raise SpecError(
                f"{globs.source}: input glob '{pattern.text}' matches no file under {root}",
                hint="fix the glob or remove it",
            )
    return FileSet(root, w.files, [])
