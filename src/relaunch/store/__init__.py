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


def open_store(url: str) -> ObjectStore:
    """The store named by ``url``: ``gs://bucket/prefix`` or a local directory path."""
    if url.startswith("gs://"):
        from relaunch.store.gcs import GCSStore  # lazy: google-cloud-storage is heavy

        return GCSStore(url)
    if url.startswith("file://"):
        url = url[len("file://") :]
    return LocalStore(url)
