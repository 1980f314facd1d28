"""Runs ``_statworker`` tasks in worker processes and in the caller, whichever is free.

Reading and stat'ing many small files from Python is bound by the interpreter, not the
disk, and threads would share one GIL: processes are what scale. A worker is a plain
``python -I -S _statworker.py`` (no fork, no import of relaunch), started only when there
is enough work to pay for its start-up (~10 ms). The caller is not idle meanwhile: when
no reply is waiting it runs a small batch itself, so the work is shared dynamically and a
small tree never starts a process at all.
"""

from __future__ import annotations

import marshal
import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from typing import Any

from relaunch.errors import SpecError
from relaunch.images import _statworker

Done = Callable[[Any], None]

# Tasks are grouped into batches of about this cost (a file to stat costs 1, a file to
# hash 8): big enough that a round trip is cheap, small enough to share the work evenly.
_BATCH_COST = 512
_LOCAL_BATCH_COST = 128
# Start workers once this much work is queued.
_SPAWN_COST = 4000
_IN_FLIGHT = 2  # batches per worker: one running, one waiting in its pipe


def default_workers() -> int:
    """Worker processes besides the caller: one per core but the caller's."""
    if os.name != "posix" or not sys.executable:
        return 0  # select() on pipes and the worker script need a POSIX system
    return max(1, (os.cpu_count() or 1) - 1)


class _Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", _statworker.__file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        os.set_blocking(self.wfd, False)
        self.out = bytearray()  # frames not yet written
        self.inbuf = bytearray()
        self.waiting: deque[list[Done]] = deque()  # callbacks of the batches in flight

    def failure(self) -> SpecError:
        """The error for a worker whose pipe broke: the last line it wrote to stderr (its
        traceback's exception), read once it has exited."""
        self.wait()
        err = self.proc.stderr.read() if self.proc.stderr is not None else b""
        lines = err.decode(errors="replace").strip().splitlines()
        last = lines[-1].strip()[:300] if lines else "it exited"
        return SpecError(f"image hashing worker failed: {last}")

    def close(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()

    def wait(self) -> None:
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class TaskPool:
    """``submit`` tasks, then ``drain``: each task's callback gets its result, in the
    caller's thread. Use as a context manager: workers are stopped on exit."""

    def __init__(self, workers: int | None = None) -> None:
        self.max_workers = default_workers() if workers is None else workers
        self.queue: deque[tuple[tuple[Any, ...], int, Done]] = deque()
        self.queued_cost = 0
        self.workers: list[_Worker] = []
        self.pending = 0  # tasks submitted whose callback has not run

    def __enter__(self) -> TaskPool:
        return self

    def __exit__(self, *exc: object) -> None:
        for w in self.workers:
            w.close()  # all first: they exit in parallel
        for w in self.workers:
            w.wait()
        self.workers = []

    def expect(self, cost: int) -> None:
        """Start the workers now when about ``cost`` of work is coming, so their start-up
        overlaps the caller preparing it."""
        if not self.workers and self.max_workers and cost >= _SPAWN_COST:
            self.workers = [_Worker() for _ in range(self.max_workers)]

    def submit(self, task: tuple[Any, ...], cost: int, done: Done) -> None:
        self.queue.append((task, cost, done))
        self.queued_cost += cost
        self.pending += 1

    def _batch(self, limit: int) -> tuple[list[tuple[Any, ...]], list[Done]]:
        tasks: list[tuple[Any, ...]] = []
        dones: list[Done] = []
        cost = 0
        while self.queue and cost < limit:
            task, c, done = self.queue.popleft()
            tasks.append(task)
            dones.append(done)
            cost += c
        self.queued_cost -= cost
        return tasks, dones

    def _finish(self, dones: list[Done], results: list[Any]) -> None:
        for done, result in zip(dones, results, strict=True):
            self.pending -= 1
            done(result)

    def pump(self, *, block: bool) -> None:
        """Move work along: start workers when worth it, send batches, take replies.
        ``block``: when nothing is ready, run a batch here or wait for a reply."""
        self.expect(self.queued_cost)
        for w in self.workers:
            while self.queue and len(w.waiting) < _IN_FLIGHT:
                tasks, dones = self._batch(_BATCH_COST)
                frame = marshal.dumps(tasks)
                w.out += len(frame).to_bytes(4, "little") + frame
                w.waiting.append(dones)
        busy = [w for w in self.workers if w.waiting or w.out]
        if not busy:
            if block and self.queue:
                self._finish(*self._run_here())
            return
        import select

        wait_for_reply = block and not self.queue
        ready_r, ready_w, _ = select.select(
            [w.rfd for w in busy if w.waiting],
            [w.wfd for w in busy if w.out],
            [],
            None if wait_for_reply else 0,
        )
        for w in busy:
            if w.wfd in ready_w:
                try:
                    n = os.write(w.wfd, w.out)
                except BlockingIOError:
                    n = 0
                except BrokenPipeError:
                    raise w.failure() from None
                del w.out[:n]
            if w.rfd in ready_r:
                self._read(w)
        if block and not ready_r and self.queue:
            self._finish(*self._run_here())

    def _run_here(self) -> tuple[list[Done], list[Any]]:
        tasks, dones = self._batch(_LOCAL_BATCH_COST)
        return dones, _statworker.run_batch(tasks)

    def _read(self, w: _Worker) -> None:
        chunk = os.read(w.rfd, 1 << 20)
        if not chunk:
            raise w.failure()
        w.inbuf += chunk
        while len(w.inbuf) >= 4:
            n = int.from_bytes(w.inbuf[:4], "little")
            if len(w.inbuf) < 4 + n:
                break
            results = marshal.loads(bytes(w.inbuf[4 : 4 + n]))
            del w.inbuf[: 4 + n]
            self._finish(w.waiting.popleft(), results)

    def drain(self) -> None:
        """Run until every submitted task's callback has run."""
        while self.pending:
            self.pump(block=True)
