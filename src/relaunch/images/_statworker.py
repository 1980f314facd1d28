"""The per-folder work of the tag computation: stat a folder's files and compare them with
the stat cache, hash what changed. Run as a script (``python -I -S _statworker.py``) it
serves batches of such tasks; imported, the same functions run in the caller. It imports
nothing from relaunch (and ``hashlib`` only when it must hash), so a worker starts in
milliseconds and never re-runs the caller's main.

Protocol: frames of a 4-byte little-endian length and a marshal payload. A request is a
list of tasks, the reply the list of their results:

- ``("v", folder, dirsig, names, stats, trusted)`` — verify a cached folder: 0 when the
  folder's own stat (``dirsig``, see :func:`dir_signature`) and its files' stats are as
  cached (and the entry is ``trusted``), 1 when the folder's stat is but its files' are
  not, 2 when the folder changed, is gone, or its signature is not to be trusted (None).
  A folder's mtime and ctime change whenever an entry is added, removed or renamed in it
  (POSIX), so an unchanged signature means an unchanged listing: no readdir is needed.
- ``("h", folder, names, known)`` — stat and hash ``names``; ``known`` maps a name to
  (size, mtime_ns, ctime_ns, ino, mode, kind_digest) that may be reused when the stat still
  matches. Result: (rows, errors), a row (name, size, mtime_ns, ctime_ns, ino, mode,
  kind_digest),
  an error (name, message). Names that vanished or are not regular files or symlinks
  are left out.

``stats`` is :func:`stats_blob` of the names; ``names`` in a "v" task are NUL-joined.
"""

from __future__ import annotations

import marshal
import os
import sys
from stat import S_ISLNK, S_ISREG

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a worker ~9 ms of start-up (it imports re)
    from typing import Any

_CHUNK = 1 << 20
_DIR_FD = os.stat in os.supports_dir_fd and hasattr(os, "O_DIRECTORY")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_READV = hasattr(os, "readv")
_BUF = [bytearray(_CHUNK)]
_VIEW = memoryview(_BUF[0])


def dir_signature(folder: str) -> tuple[int, int, int] | None:
    """(mtime_ns, ctime_ns, inode) of a folder, or None when it cannot be stat'ed."""
    try:
        s = os.lstat(folder)
    except OSError:
        return None
    return (s.st_mtime_ns, s.st_ctime_ns, s.st_ino)


def stats_blob(values: list[int]) -> bytes:
    """The packed stats of a folder's files, (size, mtime_ns, ctime_ns, ino, mode) per
    file, in the form the cache keeps and compares (marshal version 2: no
    back-references, so the same values always give the same bytes). The ctime is there
    because a rewrite of the same size with its mtime set back (``touch -d``) changes
    nothing else; git's index keeps it for the same reason."""
    return marshal.dumps(values, 2)


def stat_values(folder: str, names: list[str]) -> list[int]:
    """(size, mtime_ns, ctime_ns, ino, mode) of each name, flattened. Raises OSError."""
    out: list[int] = []
    add = out.extend
    if _DIR_FD:
        stat = os.stat
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for n in names:
                s = stat(n, dir_fd=fd, follow_symlinks=False)
                add((s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino, s.st_mode))
        finally:
            os.close(fd)
    else:
        for n in names:
            s = os.lstat(os.path.join(folder, n))
            add((s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino, s.st_mode))
    return out


def verify(
    folder: str, dirsig: tuple[int, int, int] | None, names: str, stats: bytes, trusted: bool
) -> int:
    if dirsig is None or dir_signature(folder) != tuple(dirsig):
        return 2
    try:
        same = stats_blob(stat_values(folder, names.split("\0") if names else [])) == stats
    except OSError:
        return 1
    return 0 if same and trusted else 1


def digest(path: str) -> str:
    """SHA-256 of a regular file's bytes (the file is not followed if it is a link)."""
    import hashlib

    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    try:
        if _READV:  # into one reused buffer: no new bytes object per chunk
            while n := os.readv(fd, _BUF):
                h.update(_VIEW[:n])
        else:
            while chunk := os.read(fd, _CHUNK):
                h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def kind_digest(path: str, mode: int) -> str:
    """The "<kind>:<digest>" of a file: ``l`` a symlink (the digest of its target text), ``x`` an
    executable file, ``f`` any other file."""
    if S_ISLNK(mode):
        import hashlib

        target = os.fsencode(os.readlink(path))
        return "l:" + hashlib.sha256(b"symlink\0" + target).hexdigest()
    return ("x:" if mode & 0o111 else "f:") + digest(path)


def hash_names(
    folder: str, names: list[str], known: dict[str, tuple[Any, ...]]
) -> tuple[list[tuple[Any, ...]], list[tuple[str, str]]]:
    rows: list[tuple[Any, ...]] = []
    errors: list[tuple[str, str]] = []
    for n in names:
        path = os.path.join(folder, n)
        try:
            s = os.lstat(path)
            mode = s.st_mode
            if not (S_ISREG(mode) or S_ISLNK(mode)):
                continue  # sockets, fifos, devices: Docker cannot COPY them either
            sig = (s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino, mode)
            k = known.get(n)
            kd = k[5] if k is not None and k[:5] == sig else kind_digest(path, mode)
        except FileNotFoundError:
            continue  # removed since the folder was listed
        except OSError as e:
            errors.append((n, e.strerror or str(e)))
            continue
        rows.append((n, *sig, kd))
    return rows, errors


def run_batch(batch: list[tuple[Any, ...]]) -> list[Any]:
    out: list[Any] = []
    for task in batch:
        if task[0] == "v":
            out.append(verify(*task[1:]))
        else:
            out.append(hash_names(*task[1:]))
    return out


def serve() -> None:
    rd, wr = sys.stdin.buffer, sys.stdout.buffer
    while len(head := rd.read(4)) == 4:
        batch = marshal.loads(rd.read(int.from_bytes(head, "little")))
        reply = marshal.dumps(run_batch(batch))
        wr.write(len(reply).to_bytes(4, "little") + reply)
        wr.flush()
    os._exit(0)  # nothing to clean up: skip the interpreter's shutdown


if __name__ == "__main__":
    serve()
