"""Stores: where relaunch keeps everything it knows (DESIGN.md §2)."""

from __future__ import annotations

from relaunch.store.base import ObjectMeta, ObjectStore, check_key, get_json, put_json
from relaunch.store.local import LocalStore

__all__ = [
    "LocalStore",
    "ObjectMeta",
    "ObjectStore",
    "check_key",
    "get_json",
    "open_store",
    "put_json",
]


def open_store(url: str, *, call_timeout: float | None = None) -> ObjectStore:
    """The store named by ``url``: ``gs://bucket/prefix`` or a local directory path.
    ``call_timeout`` bounds one call, retries included (an agent keeps it well under its
    lease: a call that hangs must not outlive the lease it acts under)."""
    store: ObjectStore
    if url.startswith("gs://"):
        from relaunch.store.gcs import GCSStore  # lazy: google-cloud-storage is heavy

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
