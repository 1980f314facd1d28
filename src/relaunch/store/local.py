"""LocalStore: the ObjectStore contract on a directory (the embedded default).

How the contract holds between processes:

- Every write lands in ``.store/tmp/`` first and is renamed into place, so a reader
  sees the old object or the new one, never a mix.
- The generation of an object *is* its file's ``st_mtime_ns``, set on the temporary
  file before the rename. A reader takes it with ``fstat`` on the descriptor it reads
  from, so data and generation always belong together, with no lock on reads.
- Check-and-rename runs under an exclusive ``flock`` on one of a fixed set of lock
  files chosen by the key's hash, so conditional writes are atomic between threads
  and processes on one machine (POSIX only; NFS is not supported).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from stat import S_ISREG
from typing import IO

from relaunch.errors import ObjectNotFound, PreconditionFailed, StoreError
from relaunch.store.base import Listing, ObjectMeta, check_key
from relaunch.store.ignore import IGNORE_FILE, ignore_self

_INTERNAL = ".store"
_LOCK_STRIPES = 64
# Said by every caller, one-shot commands too: an agent or a runtime that retries says
# so in its own line ("retrying"), never the store.
_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free space there",
    errno.EDQUOT: "the disk quota is used up: free space there",
    errno.EROFS: "the store's folder is on a read-only filesystem: choose a writable one",
    errno.EACCES: "no permission to write there: fix the folder's owner or mode",
    errno.EPERM: "no permission to write there: fix the folder's owner or mode",
}


class LocalStore:
    """A store rooted at a local directory (created on first use)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = str(self.root)
        self._prefix = os.path.join(self.url, "")  # files are named as strings: see _file
        self._tmp = self.root / _INTERNAL / "tmp"
        self._locks = self.root / _INTERNAL / "locks"
        self._ready = False

    def __repr__(self) -> str:
        return f"LocalStore({self.url!r})"

    # -- paths and locks -------------------------------------------------------

    def _ensure(self) -> None:
        if not self._ready:
            try:
                self._tmp.mkdir(parents=True, exist_ok=True)
                self._locks.mkdir(parents=True, exist_ok=True)
                ignore_self(self.root)  # a store inside a repository stays out of `git add`
            except OSError as e:
                raise StoreError(
                    f"cannot create the store at {self.root}: {e.strerror}",
                    hint="choose a writable directory with --store or [store] url",
                ) from e
            self._ready = True

    def _file(self, key: str) -> str:
        """The file of ``key``, as a string: an agent reads thousands of small objects a
        tick, and building a ``Path`` cost twice what reading the file does."""
        check_key(key)
        if key == _INTERNAL or key.startswith(_INTERNAL + "/"):
            raise StoreError(f"store key {key!r} is reserved for the store itself")
        return self._prefix + key

    def _path(self, key: str) -> Path:
        return Path(self._file(key))

    @contextlib.contextmanager
    def _io(self, action: str, key: str) -> Iterator[None]:
        """Any other OS error is a StoreError that says what to do: a full disk, a
        read-only or unwritable folder must slow relaunch down, never crash it."""
        try:
            yield
        except OSError as e:
            if isinstance(e, (FileNotFoundError, NotADirectoryError, IsADirectoryError)):
                raise
            raise StoreError(
                f"cannot {action} {key!r} in {self.url}: {e.strerror or e}",
                hint=_OS_HINTS.get(e.errno or 0, "check the store's folder and its disk"),
            ) from e

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        self._ensure()
        stripe = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=2).digest(), "big")
        fd = os.open(self._locks / f"{stripe % _LOCK_STRIPES:02d}", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _tmpfile(self) -> tuple[int, Path]:
        self._ensure()
        name = f"{os.getpid()}-{time.monotonic_ns()}-{os.urandom(4).hex()}"
        path = self._tmp / name
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), path

    # -- the contract ----------------------------------------------------------

    def get(self, key: str) -> tuple[bytes, int]:
        name = self._file(key)
        try:
            with self._io("read", key):
                fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
                try:  # a folder: os.read raises IsADirectoryError
                    st = os.fstat(fd)
                    return _read_all(fd, st.st_size), st.st_mtime_ns
                finally:
                    os.close(fd)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(f"no object {key!r} in {self.url}") from None

    def stat(self, key: str) -> ObjectMeta | None:
        try:
            st = os.stat(self._file(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not S_ISREG(st.st_mode):
            return None
        return ObjectMeta(key, st.st_mtime_ns, st.st_size, st.st_mtime_ns)

    def put(self, key: str, data: bytes, *, if_generation_match: int | None = None) -> int:
        with self._io("write", key):
            fd, tmp = self._tmpfile()
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                return self._commit(key, tmp, if_generation_match)
            finally:
                tmp.unlink(missing_ok=True)

    def upload_file(self, key: str, path: Path, *, if_generation_match: int | None = None) -> int:
        with self._io("write", key):
            fd, tmp = self._tmpfile()
            os.close(fd)
            try:
                shutil.copyfile(path, tmp)  # copy_file_range/sendfile: no copy through Python
                return self._commit(key, tmp, if_generation_match)
            finally:
                tmp.unlink(missing_ok=True)

    def _commit(self, key: str, tmp: Path, condition: int | None) -> int:
        dest = self._path(key)
        with self._locked(key):
            current = self.stat(key)
            current_gen = current.generation if current else 0
            if condition is not None and condition != current_gen:
                what = "exists" if condition == 0 else f"is at generation {current_gen}"
                raise PreconditionFailed(
                    f"conditional write of {key!r} failed: expected generation "
                    f"{condition}, object {what}"
                )
            gen = max(time.time_ns(), current_gen + 1)
            os.utime(tmp, ns=(gen, gen))
            gen = os.stat(tmp).st_mtime_ns
            if gen <= current_gen:
                raise StoreError(
                    f"the filesystem under {self.root} keeps timestamps too coarse for generations",
                    hint="put the local store on ext4, xfs, btrfs or tmpfs",
                )
            for _ in range(5):  # a concurrent delete may remove an emptied parent dir
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.rename(tmp, dest)
                    return gen
                except FileNotFoundError:
                    continue
            raise StoreError(f"could not write {key!r} in {self.url}")

    def delete(self, key: str, *, if_generation_match: int | None = None) -> None:
        path = self._path(key)
        with self._io("delete", key), self._locked(key):
            current = self.stat(key)
            if if_generation_match is not None and (
                current is None or current.generation != if_generation_match
            ):
                raise PreconditionFailed(
                    f"conditional delete of {key!r} failed: expected generation "
                    f"{if_generation_match}, found {current.generation if current else 'none'}"
                )
            if current is None:
                return
            path.unlink(missing_ok=True)
        self._prune(path.parent)

    def _prune(self, directory: Path) -> None:
        """Remove emptied parent folders, so listings match an object store's."""
        while directory != self.root:
            try:
                directory.rmdir()
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    return
                raise
            directory = directory.parent

    def list(self, prefix: str, *, delimiter: str | None = None) -> Listing:
        if delimiter not in (None, "/"):
            raise StoreError("LocalStore lists with delimiter '/' or none")
        head, _, stem = prefix.rpartition("/")
        base = self.root / head if head else self.root
        if head:
            check_key(head)
        objects: list[ObjectMeta] = []
        prefixes: list[str] = []
        try:
            with self._io("list", prefix):
                entries = list(os.scandir(base))
        except (FileNotFoundError, NotADirectoryError):
            return Listing([], [])
        for entry in entries:
            name = entry.name
            if not name.startswith(stem) or (not head and name in (_INTERNAL, IGNORE_FILE)):
                continue
            key = f"{head}/{name}" if head else name
            if entry.is_dir(follow_symlinks=False):
                if delimiter:
                    prefixes.append(key + "/")
                else:
                    _walk(entry.path, key, objects)
            elif entry.is_file(follow_symlinks=False):
                try:
                    st = entry.stat()
                except FileNotFoundError:  # deleted while listing
                    continue
                objects.append(ObjectMeta(key, st.st_mtime_ns, st.st_size, st.st_mtime_ns))
        objects.sort(key=lambda m: m.key)
        prefixes.sort()
        return Listing(objects, prefixes)

    def download_file(self, key: str, path: Path) -> int:
        src_path = self._path(key)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        try:
            with self._io("download", key), open(src_path, "rb") as src, open(tmp, "wb") as out:
                gen = os.fstat(src.fileno()).st_mtime_ns
                _copy_fd(src.fileno(), out.fileno())
        except FileNotFoundError:
            tmp.unlink(missing_ok=True)
            raise ObjectNotFound(f"no object {key!r} in {self.url}") from None
        except StoreError:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, path)
        return gen

    def open_read(self, key: str) -> IO[bytes]:
        try:
            return open(self._file(key), "rb")
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r} in {self.url}") from None


def _walk(directory: str, key_prefix: str, out: list[ObjectMeta]) -> None:
    """Every object under ``directory`` into ``out``: folder by folder, with string
    paths (an agent lists ``live/`` — thousands of folders — every few seconds)."""
    folders = [(directory, key_prefix)]
    while folders:
        path, prefix = folders.pop()
        try:
            with os.scandir(path) as found:
                entries = list(found)
        except (FileNotFoundError, NotADirectoryError):  # deleted while listing
            continue
        for entry in entries:
            key = f"{prefix}/{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                folders.append((entry.path, key))
            elif entry.is_file(follow_symlinks=False):
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                out.append(ObjectMeta(key, st.st_mtime_ns, st.st_size, st.st_mtime_ns))


def _read_all(fd: int, size: int) -> bytes:
    """The whole file from an open descriptor, ``size`` bytes as its fstat said (an
    object's file is never written after it is renamed into place; read to the end all
    the same): one read and one that finds the end, for a small object."""
    chunks = [os.read(fd, size + 1)]
    while chunks[-1]:
        chunks.append(os.read(fd, max(1 << 16, size + 1)))
    return b"".join(chunks)


def _copy_fd(src: int, dst: int) -> None:
    """Copy an open file in the kernel when it can (the reader keeps the exact inode
    whose generation it took)."""
    size = os.fstat(src).st_size
    offset = 0
    try:
        while offset < size:
            n = os.copy_file_range(src, dst, size - offset, offset, offset)
            if n == 0:
                break
            offset += n
        return
    except OSError:
        pass
    os.lseek(src, offset, os.SEEK_SET)
    os.lseek(dst, offset, os.SEEK_SET)
    while chunk := os.read(src, 1 << 20):
        os.write(dst, chunk)
