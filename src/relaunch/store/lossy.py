"""A store whose writes sometimes lose their answer (the ``lose-answers`` fault of
``relaunch.faults``, for crash-safety tests): the write lands, the caller gets an error.
Google Cloud Storage does this when a connection drops after the server applied a write.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import IO

from relaunch.errors import StoreError
from relaunch.store.base import Listing, ObjectMeta, ObjectStore


class LossyStore:
    def __init__(self, inner: ObjectStore, rate: float) -> None:
        self.inner = inner
        self.url = inner.url
        self.rate = rate
        self._random = random.Random()

    def _maybe_lose(self, key: str) -> None:
        if self._random.random() < self.rate:
            raise StoreError(f"the answer to a write of {key!r} was lost (injected fault)")

    def get(self, key: str) -> tuple[bytes, int]:
        return self.inner.get(key)

    def stat(self, key: str) -> ObjectMeta | None:
        return self.inner.stat(key)

    def put(self, key: str, data: bytes, *, if_generation_match: int | None = None) -> int:
        gen = self.inner.put(key, data, if_generation_match=if_generation_match)
        self._maybe_lose(key)
        return gen

    def delete(self, key: str, *, if_generation_match: int | None = None) -> None:
        self.inner.delete(key, if_generation_match=if_generation_match)
        self._maybe_lose(key)

    def list(self, prefix: str, *, delimiter: str | None = None) -> Listing:
        return self.inner.list(prefix, delimiter=delimiter)

    def upload_file(self, key: str, path: Path, *, if_generation_match: int | None = None) -> int:
        gen = self.inner.upload_file(key, path, if_generation_match=if_generation_match)
        self._maybe_lose(key)
        return gen

    def download_file(self, key: str, path: Path) -> int:
        return self.inner.download_file(key, path)

    def open_read(self, key: str) -> IO[bytes]:
        return self.inner.open_read(key)
