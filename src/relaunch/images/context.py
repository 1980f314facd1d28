"""The build context as a deterministic ``tar.gz``: entries sorted by path, times zero,
owners root with no names, modes reduced to 0644/0755 (0777 for links), gzip header
without time or name. Its bytes depend only on the files' paths, kinds and contents.

The Dockerfile and its dockerignore are always included (Docker needs them even when the
dockerignore lists them). Every file the tag was computed from (the context's files, or
the ``inputs`` that lie inside the context) and the Dockerfile are checked against the
digests the tag used while they are streamed, so an edit made between plan and build
fails the build instead of shipping an image that does not match its tag.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat as st
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from relaunch.errors import UserInputError
from relaunch.images.dockerignore import Matcher
from relaunch.images.files import FileEntry, context_files
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


def _add_file(tar: tarfile.TarFile, e: FileEntry, expected: str | None) -> None:
    if st.S_ISLNK(e.mode):
        ti = _info(e.rel, tarfile.SYMTYPE, mode=0o777)
        ti.linkname = os.readlink(e.path)
        tar.addfile(ti)
        return
    ti = _info(e.rel, tarfile.REGTYPE, size=e.size, mode=0o755 if e.mode & 0o111 else 0o644)
    with open(e.path, "rb") as f:
        reader = _HashingReader(f)
        tar.addfile(ti, io.BufferedReader(reader, 1 << 20))
        actual = reader.h.hexdigest()
    if expected is not None and expected.partition(":")[2] != actual:
        raise UserInputError(
            f"{e.path} changed while the image was being built",
            hint="run the build again (the tag must describe what is inside the image)",
        )


def _forced(image: Image, listed: set[str]) -> list[FileEntry]:
    out = []
    for p in (image.dockerfile, image.dockerignore):
        if p is None:
            continue
        try:
            rel = p.relative_to(image.context).as_posix()
        except ValueError:
            continue
        if rel not in listed:
            s = p.lstat()
            out.append(FileEntry(rel, s.st_size, s.st_mtime_ns, s.st_ino, s.st_mode, str(p)))
    return out


def expected_digests(stack: Stack, image: Image, fp: Fingerprint) -> dict[str, str]:
    """Context path → the "<kind>:<digest>" tag ``fp`` was computed from, for every file of
    the tag that lies in the context, and the Dockerfile."""
    if image.inputs is None:
        out = dict(fp.files)  # already relative to the context
    else:  # relative to the project root
        out = {}
        for rel, kd in fp.files.items():
            try:
                out[(stack.root / rel).relative_to(image.context).as_posix()] = kd
            except ValueError:
                continue  # an input outside the context is not sent
    out[image.dockerfile_in_context()] = "f:" + fp.dockerfile
    return out


def write_context(
    stack: Stack, image: Image, dest: Path, *, expected: Mapping[str, str] | None = None
) -> ContextTarball:
    """Write ``image``'s context to ``dest`` (a .tar.gz). ``expected`` maps context paths
    to the "<kind>:<digest>" the tag was computed from."""
    image.dockerfile_in_context()  # a Dockerfile outside the context is a SpecError
    fs = context_files(
        image.context,
        Matcher.from_file(image.dockerignore),
        state_dir=stack.state_dir,
        include_git=image.include_git,
    )
    files = fs.files + _forced(image, {e.rel for e in fs.files})
    entries: list[tuple[str, FileEntry | None]] = [(d, None) for d in fs.dirs]
    entries += [(e.rel, e) for e in files]
    entries.sort(key=lambda t: t[0])
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    try:
        with (
            open(tmp, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
        ):
            for rel, e in entries:
                if e is None:
                    tar.addfile(_info(rel, tarfile.DIRTYPE, mode=0o755))
                else:
                    _add_file(tar, e, expected.get(rel) if expected is not None else None)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    h = hashlib.sha256()
    with open(dest, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return ContextTarball(dest, h.hexdigest(), dest.stat().st_size, len(files))
