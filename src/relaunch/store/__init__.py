"""Stores: where relaunch keeps everything it knows (DESIGN.md §2)."""

from __future__ import annotations

import re
from pathlib import Path

from relaunch.errors import UserInputError
from relaunch.store.base import ObjectMeta, ObjectStore, check_key, get_json, put_json
from relaunch.store.local import LocalStore

__all__ = [
    "LocalStore",
    "ObjectMeta",
    "ObjectStore",
    "check_key",
    "check_store_scheme",
    "check_store_url",
    "get_json",
    "open_store",
    "put_json",
]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(//)?")
_HINT = "use a folder, file:///path or gs://BUCKET[/PREFIX] (--store, $RELAUNCH_STORE, [store] url)"


def check_store_scheme(url: str) -> str:
    """``url`` if it names a kind of store relaunch has; else a one-line UserInputError.
    Only a folder (or ``file://``) and ``gs://`` are stores: anything else would be taken
    for a folder name and quietly create ``./s3:/bucket/…``."""
    if not url or not url.strip():
        raise UserInputError("the store URL is empty", hint=_HINT)
    if "\x00" in url or any(ord(c) < 32 for c in url):
        raise UserInputError(f"the store URL {url!r} has control characters", hint=_HINT)
    m = _SCHEME.match(url)
    # A single letter before ':' is a Windows drive, not a scheme.
    if m and len(m.group(1)) > 1 and (m.group(2) or m.group(1).lower() in ("gs", "file")):
        scheme = m.group(1).lower()
        if scheme not in ("gs", "file"):
            raise UserInputError(
                f"store URL {url!r}: '{scheme}://' stores are not supported", hint=_HINT
            )
        if scheme == "gs" and not url[len("gs://") :].split("/", 1)[0]:
            raise UserInputError(f"store URL {url!r} names no bucket", hint="gs://BUCKET[/PREFIX]")
        if scheme == "file" and not url[len("file://") :]:
            raise UserInputError(f"store URL {url!r} names no folder", hint=_HINT)
    return url


def check_store_url(url: str) -> str:
    """``url`` if relaunch can open a store there: a known scheme, and for a folder, no
    file in the way (a store in a plain file would list nothing and say so happily)."""
    check_store_scheme(url)
    if not url.startswith("gs://"):
        path = Path(url[len("file://") :] if url.startswith("file://") else url).expanduser()
        # The store folder, or the nearest part of its path that exists, must be a folder.
        for part in [path, *path.parents]:
            if part.exists() or part.is_symlink():
                if not part.is_dir():
                    raise UserInputError(
                        f"store {url!r}: {part} is a file, not a folder",
                        hint="name a folder (created on first use) or gs://BUCKET[/PREFIX]",
                    )
                break
    return url


def open_store(url: str, *, call_timeout: float | None = None) -> ObjectStore:
    """The store named by ``url``: ``gs://bucket/prefix``, ``file://path`` or a local
    directory path. Any other scheme, an empty URL or a path through a file is refused.
    ``call_timeout`` bounds one call, retries included (an agent keeps it well under its
    lease: a call that hangs must not outlive the lease it acts under)."""
    check_store_url(url)
    store: ObjectStore
    if url.startswith("gs://"):
        from relaunch.store.gcs import GCSStore  # lazy: its HTTP stack loads on first use

        store = GCSStore(url) if call_timeout is None else GCSStore(url, retry_timeout=call_timeout)
    else:
        if url.startswith("file://"):
            url = url[len("file://") :]
        store = LocalStore(url)
    from relaunch import faults

    if rate := faults.lost_answer_rate():
        from relaunch.store.lossy import LossyStore

        store = LossyStore(store, rate)
    return store
