"""The runtime side of simulated attempts: one process acting as the runtime of every
attempt of the simulated backend (``backend.py``), through the real store API and the
runtime's own fencing code (``relaunch.runtime.fence.Slot``):

- start: no ``.stop``, the run and attempt records name this submission (its fencing
  token), then the heartbeat slot taken by compare-and-swap — as the runtime starts;
- every ``--interval`` seconds (10: the runtime's default): the fence check (the attempt
  record still names the token) and the heartbeat written through the slot;
- ended at the time ``--plan`` gives its run (``{run_id: unix time}``, re-read when it
  changes): the result, the ``exited`` heartbeat, then ``<file>.ended`` (the platform
  sees the job over) whose ``t`` is when it ended;
- ``<file>.cancel`` (the agent cancelled it) is answered as SIGTERM is: result
  ``preempted``, ``exited`` heartbeat, ``.ended``; a fenced one writes nothing more;
- with ``--preempt F``, the first attempt of a fraction F of the runs (chosen by run id)
  is preempted ``--preempt-after`` seconds after it started, the same way.

    python -m tests.simfleet.simulator --dir D --store URL [--endpoint http://…]
        [--stats FILE] [--ledger FILE]

``--ledger`` gets a line per start, heartbeat and end of each simulated command (the
format of tests/e2e/trainer.py's ledger, ``pid`` naming the simulated process), written
before the simulator lets anyone see the command over. Stops on SIGTERM and writes its
own figures (heartbeat lag: did it keep up?) to --stats.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import signal
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from relaunch.errors import StoreError
from relaunch.runs import keys
from relaunch.runtime.fence import Fenced, Slot, claim_ttl
from relaunch.store.base import ObjectStore


@dataclass
class Attempt:
    file: str
    run_id: str
    n: int
    token: str | None
    slot: Slot
    started: float = field(default_factory=time.monotonic)
    instance: str = field(default_factory=lambda: os.urandom(4).hex())  # its "pid"
    over: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def body(self, phase: str) -> bytes:
        hb = {
            "time": time.time(),
            "attempt": self.n,
            "phase": phase,
            "host": "sim",
            "pid": os.getpid(),
            "step": int(time.monotonic() - self.started),
            "instance": self.instance,
            "token": self.token,
            "idle": 0.0,
        }
        return json.dumps({k: v for k, v in hb.items() if v is not None}).encode()


class Simulator:
    def __init__(self, args: argparse.Namespace, store: ObjectStore) -> None:
        self.dir = Path(args.dir)
        self.store = store
        self.interval = args.interval
        self.plan_path = Path(args.plan) if args.plan else None
        self.plan: dict[str, float] = {}
        self._plan_mtime = 0
        self.pool = ThreadPoolExecutor(args.workers)
        self.live: dict[str, Attempt] = {}
        self.seen: set[str] = set()
        self.due: list[tuple[float, str]] = []  # (monotonic due, file): heartbeats
        self.lock = threading.Lock()
        self.lags: list[float] = []
        self.preempt, self.preempt_after = args.preempt, args.preempt_after
        self.counts = {"started": 0, "not-started": 0, "ended": 0, "cancelled": 0, "fenced": 0}
        self.counts["preempted"] = 0
        self.counts |= {"heartbeats": 0, "store-errors": 0}
        self.stopping = threading.Event()
        self.ledger = Path(args.ledger) if args.ledger else None

    def note(self, attempt: Attempt, kind: str) -> None:
        """A ledger line, as tests/e2e/trainer.py writes it (one write: never interleaved)."""
        if self.ledger is None:
            return
        step = int(time.monotonic() - attempt.started)
        line = {"run": attempt.run_id, "pid": attempt.instance, "attempt": str(attempt.n),
                "kind": kind, "step": step, "t": time.time()}  # fmt: skip
        fd = os.open(self.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(line) + "\n").encode())
        finally:
            os.close(fd)

    # -- the loop -------------------------------------------------------------------

    def run(self) -> None:
        next_scan = 0.0
        while not self.stopping.is_set():
            now = time.monotonic()
            if now >= next_scan:
                self._scan()
                self._read_plan()
                self._end_planned()
                next_scan = now + 0.5
            with self.lock:
                ready = []
                while self.due and self.due[0][0] <= now:
                    ready.append(heapq.heappop(self.due))
            for due, name in ready:
                self.pool.submit(self._beat, name, due)
            self.stopping.wait(0.05)
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _scan(self) -> None:
        names = {e.name for e in os.scandir(self.dir)}
        for name in names:
            if name.endswith(".json") and not name.startswith(".") and name not in self.seen:
                self.seen.add(name)
                self.pool.submit(self._start, name)
            elif name.endswith(".cancel"):
                base = name[: -len(".cancel")]
                attempt = self.live.get(base)
                if attempt is not None and not attempt.over:
                    self.pool.submit(self._end, attempt, "cancelled")

    def _read_plan(self) -> None:
        if self.plan_path is None:
            return
        try:
            mtime = self.plan_path.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime != self._plan_mtime:
            self._plan_mtime = mtime
            self.plan = json.loads(self.plan_path.read_text())

    def _end_planned(self) -> None:
        now = time.time()
        for attempt in list(self.live.values()):
            at = self.plan.get(attempt.run_id)
            if attempt.over:
                continue
            if at is not None and now >= at:
                self.pool.submit(self._end, attempt, "ended")
            elif self._preempted(attempt):
                self.pool.submit(self._end, attempt, "preempted")

    def _preempted(self, attempt: Attempt) -> bool:
        chosen = zlib.crc32(attempt.run_id.encode()) % 1000 < self.preempt * 1000
        lived = time.monotonic() - attempt.started
        return attempt.n == 1 and chosen and lived >= self.preempt_after

    # -- one attempt ----------------------------------------------------------------

    def _start(self, name: str) -> None:
        record = json.loads((self.dir / name).read_text())
        rid, n, token = record["run_id"], int(record["attempt"]), record["token"]
        slot = Slot(self.store, rid, n, token, claim_ttl(self.interval))
        attempt = Attempt(name, rid, n, token, slot)
        try:
            ok = (
                self.store.stat(keys.stop_key(rid)) is None
                and slot.current(starting=True)
                and slot.acquire(lambda: attempt.body("starting"), self.stopping.is_set)
            )
            if ok:
                slot.write(attempt.body("running"))
        except (StoreError, Fenced):
            ok = False
        if not ok:  # not current (or the store failed at start): it exits at once
            self.counts["not-started"] += 1
            self._ended_file(name)
            return
        self.counts["started"] += 1
        self.note(attempt, "start")
        with self.lock:
            self.live[name] = attempt
            heapq.heappush(self.due, (time.monotonic() + self.interval, name))

    def _beat(self, name: str, due: float) -> None:
        attempt = self.live.get(name)
        if attempt is None or attempt.over:
            return
        with attempt.lock:
            if attempt.over:
                return
            self.lags.append(time.monotonic() - due)
            try:
                if not attempt.slot.current():
                    raise Fenced("another submission of this attempt replaced this one")
                attempt.slot.write(attempt.body("running"))
                self.counts["heartbeats"] += 1
                self.note(attempt, "step")
            except Fenced:
                self._fence(attempt)
                return
            except StoreError:
                self.counts["store-errors"] += 1
        with self.lock:
            heapq.heappush(self.due, (due + self.interval, name))

    def _fence(self, attempt: Attempt) -> None:
        attempt.over = True
        self.note(attempt, "fenced")  # the command is killed at once
        self.counts["fenced"] += 1
        attempt.slot.release(attempt.body("fenced"))
        self._ended_file(attempt.file)

    def _end(self, attempt: Attempt, why: str) -> None:
        with attempt.lock:
            if attempt.over:
                return
            attempt.over = True
            self.note(attempt, "end" if why == "ended" else "term")
            ended = time.time()
            cancelled = why != "ended"  # SIGTERM: a cancel or a spot preemption
            result = {
                "attempt": attempt.n,
                "exit_code": 143 if cancelled else 0,
                "signal": "SIGTERM" if cancelled else None,
                "reason": "preempted" if cancelled else "succeeded",
                "detail": "SIGTERM from outside" if cancelled else "exit code 0",
                "last_lines": [],
                "final_step": int(time.monotonic() - attempt.started),
                "ended_at": ended,
            }
            try:
                self.store.put(
                    keys.result_key(attempt.run_id, attempt.n), json.dumps(result).encode()
                )
                attempt.slot.write(attempt.body("exited"))
            except (StoreError, Fenced):
                pass
            self.counts[why] += 1
            self._ended_file(attempt.file, ended)

    def _ended_file(self, name: str, ended: float | None = None) -> None:
        path = self.dir / (name + ".ended")
        tmp = self.dir / f".{name}.ended.tmp"
        tmp.write_text(json.dumps({"t": ended if ended is not None else time.time()}))
        os.replace(tmp, path)

    def stats(self) -> dict[str, object]:
        lags = sorted(self.lags or [0.0])
        return {
            "counts": self.counts,
            "heartbeat_lag_s": {
                "n": len(self.lags),
                "p50": round(lags[len(lags) // 2], 4),
                "p95": round(lags[min(len(lags) - 1, int(0.95 * len(lags)))], 4),
                "max": round(lags[-1], 4),
            },
        }


def open_sim_store(url: str, endpoint: str | None) -> ObjectStore:
    if url.startswith("gs://"):
        from tests.simfleet.rawgcs import RawGCS

        assert endpoint, "a gs:// store needs --endpoint"
        return RawGCS(url, endpoint)  # type: ignore[return-value]
    from relaunch.store import LocalStore

    return LocalStore(url)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--endpoint")
    p.add_argument("--interval", type=float, default=10.0)
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--plan")
    p.add_argument("--stats")
    p.add_argument("--ledger")
    p.add_argument("--preempt", type=float, default=0.0, help="fraction of runs preempted once")
    p.add_argument("--preempt-after", type=float, default=10.0)
    args = p.parse_args()
    sim = Simulator(args, open_sim_store(args.store, args.endpoint))
    signal.signal(signal.SIGTERM, lambda *_: sim.stopping.set())
    sim.run()
    if args.stats:
        Path(args.stats).write_text(json.dumps(sim.stats()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
