"""The threads an agent's requests wait on, on a bucket.

Each request to Cloud Storage waits a round trip (tens of milliseconds); a local folder
answers in microseconds, where threads would only cost. So on a bucket an agent reads
ahead, reconciles and claims its runs from one bounded pool — runs are independent of
each other, and every write a run makes is a compare-and-swap of its own objects — and
on a local folder it does all of it in order, in its own thread.

No job run here may wait on another job of the same pool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Requests in flight at once on a bucket.
WORKERS = 32


class Workers:
    def __init__(self, *, parallel: bool, size: int = WORKERS) -> None:
        self.parallel = parallel
        self.size = size
        self._pool: ThreadPoolExecutor | None = None

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``fn`` over ``items``, in order of ``items``; the first exception is raised
        once every item is done."""
        todo = list(items)
        if not self.parallel or len(todo) < 2:
            return [fn(item) for item in todo]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.size, thread_name_prefix="relaunch-agent")
        futures = [self._pool.submit(fn, item) for item in todo]
        errors = [f.exception() for f in futures]  # waits for each
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first
        return [f.result() for f in futures]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
