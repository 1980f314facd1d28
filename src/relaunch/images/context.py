"""The build context as a deterministic ``tar.gz``: entries sorted by path, times zero,
owners root with no names, modes reduced to 0644/0755 (0777 for links), gzip header
without time or name. Its bytes depend only on the files' paths, kinds and contents.

What is sent is what the tag was computed from, and nothing else (see
:func:`sent_files`): an image with ``inputs`` (a ``.image-manifest``) receives those
inputs, less what its dockerignore excludes, never the rest of the project root.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat as st
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from relaunch.errors import UserInputError
from relaunch.images.dockerignore import Matcher
from relaunch.images.fingerprint import Fingerprint
from relaunch.images.stack import Image, Stack


@dataclass(frozen=True)
class ContextTarball:
    path: Path
    sha256: str
    size: int
    files: int


class _HashingReader(io.RawIOBase):
    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.h = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self._f.readinto(b)  # type: ignore[attr-defined]
        if n:
            self.h.update(memoryview(b)[:n])
        return int(n or 0)


def _info(name: str, kind: bytes, size: int = 0, mode: int = 0o644) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.size = size
    ti.mode = mode
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def _changed(path: str) -> UserInputError:
    return UserInputError(
        f"{path} changed while the image was being built",
        hint="run the build again (the tag must describe what is inside the image)",
    )


def _add_file(tar: tarfile.TarFile, rel: str, path: str, expected: str) -> None:
    """Add one file, checking it against the "<kind>:<digest>" the tag was made of."""
    kind, _, digest = expected.partition(":")
    try:
        s = os.lstat(path)
    except FileNotFoundError:
        raise _changed(path) from None
    if st.S_ISLNK(s.st_mode):
        target = os.readlink(path)
        linked = hashlib.sha256(b"symlink\0" + os.fsencode(target)).hexdigest()
        if kind != "l" or linked != digest:
            raise _changed(path)
        ti = _info(rel, tarfile.SYMTYPE, mode=0o777)
        ti.linkname = target
        tar.addfile(ti)
        return
    if not st.S_ISREG(s.st_mode) or kind != ("x" if s.st_mode & 0o111 else "f"):
        raise _changed(path)
    ti = _info(rel, tarfile.REGTYPE, size=s.st_size, mode=0o755 if kind == "x" else 0o644)
    with open(path, "rb") as f:
        reader = _HashingReader(f)
        try:
            tar.addfile(ti, io.BufferedReader(reader, 1 << 20))
        except OSError:  # shorter than its size: it is being written
            raise _changed(path) from None
        actual = reader.h.hexdigest()
    if actual != digest:
        raise _changed(path)


def sent_files(stack: Stack, image: Image, fp: Fingerprint) -> dict[str, str]:
    """Context path → "<kind>:<digest>" of every file the build receives: the files the
    tag was computed from that lie in the context and that its dockerignore lets through
    (an input outside them only makes the tag move), and the Dockerfile. Nothing else is
    sent, so no file the tag does not cover can reach the image."""
    ignore = Matcher.from_file(image.dockerignore) if image.inputs is not None else None
    out: dict[str, str] = {}
    for rel, kd in fp.files.items():
        if image.inputs is not None:  # relative to the project root
            try:
                rel = (stack.root / rel).relative_to(image.context).as_posix()
            except ValueError:
                continue
            if ignore is not None and ignore.excluded(rel):
                continue
        out[rel] = kd
    dockerfile = image.dockerfile_in_context()
    if dockerfile not in out:  # its digest is in the tag on its own; its mode is not
        executable = image.dockerfile.stat().st_mode & 0o111
        out[dockerfile] = ("x:" if executable else "f:") + fp.dockerfile
    return out


def _parents(rels: list[str]) -> list[str]:
    dirs: set[str] = set()
    for rel in rels:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    return sorted(dirs)


def write_context(stack: Stack, image: Image, fp: Fingerprint, dest: Path) -> ContextTarball:
    """Write ``image``'s context for the tag ``fp`` to ``dest`` (a .tar.gz): exactly
    :func:`sent_files`, each checked while it is streamed against the digest the tag used,
    so an edit made between plan and build fails the build instead of shipping an image
    that does not match its tag."""
    image.dockerfile_in_context()  # a Dockerfile outside the context is a SpecError
    files = sent_files(stack, image, fp)
    entries: list[tuple[str, str | None]] = [(d, None) for d in _parents(list(files))]
    entries += list(files.items())
    entries.sort(key=lambda t: t[0])
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    try:
        with (
            open(tmp, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
        ):
            for rel, kd in entries:
                if kd is None:
                    tar.addfile(_info(rel, tarfile.DIRTYPE, mode=0o755))
                else:
                    _add_file(tar, rel, str(image.context / rel), kd)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    h = hashlib.sha256()
    with open(dest, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return ContextTarball(dest, h.hexdigest(), dest.stat().st_size, len(files))
