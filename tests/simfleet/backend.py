"""A simulated backend: thousands of attempts that cost no process (the fleet benchmark,
the chaos test at scale).

An attempt is a file in a folder shared by the agents and the simulator
(``RELAUNCH_SIM_DIR``): ``submit`` writes ``<run>.<n>.<token>.json`` (what a cloud would
be told: run, attempt, fencing token, store); the simulator (``simulator.py``) picks it
up and acts as that attempt's runtime through the real store API; it ends the attempt by
writing ``<file>.ended``, which is when ``poll`` says ENDED. ``cancel`` writes
``<file>.cancel``, which the simulator answers as a runtime answers SIGTERM.

Registered for tests and benchmarks only (``register()``: an entry in the backend
registry's one mapping), in their own process and in each agent process they start
(``python -m tests.simfleet.agent agent --store …`` is `relaunch agent` with it).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from relaunch.backends.base import AttemptStatus, Backend, Handle, SubmitContext
from relaunch.runs import queue
from relaunch.runs.records import AttemptRecord, RunRecord
from relaunch.spec.job import JobSpec
from relaunch.states import AttemptState
from relaunch.store.base import ObjectStore

NAME = "sim"


def sim_dir() -> Path:
    return Path(os.environ["RELAUNCH_SIM_DIR"])


class SimBackend(Backend):
    """Attempts as files (see the module docstring). Polls look at a file: free, as if
    the platform answered at once; the store requests are what the benchmark measures."""

    name = NAME
    thread_safe = True  # each call reads or writes files of its own attempt

    def __init__(self) -> None:
        self.dir = sim_dir()
        self.poll_interval = float(os.environ.get("RELAUNCH_SIM_POLL_INTERVAL") or 10.0)

    def submit(self, run: RunRecord, attempt: AttemptRecord, ctx: SubmitContext) -> Handle:
        name = f"{run.run_id}.{attempt.n}.{ctx.token or 'none'}.json"
        body = {
            "run_id": run.run_id,
            "attempt": attempt.n,
            "token": ctx.token,
            "store": ctx.store.url,
            "submitted": time.time(),
        }
        tmp = self.dir / f".{name}.tmp"
        tmp.write_text(json.dumps(body))
        os.replace(tmp, self.dir / name)
        return {"file": name, "where": "sim"}

    def poll(self, handle: Handle) -> AttemptStatus:
        # A string path: a Path built per poll cost more than the agent's own reads.
        if os.path.exists(f"{self.dir}/{handle['file']}.ended"):
            return AttemptStatus(AttemptState.ENDED)  # why: the runtime's result says
        return AttemptStatus(AttemptState.RUNNING)

    def cancel(self, handle: Handle, grace: float) -> None:
        (self.dir / (handle["file"] + ".cancel")).touch()

    def find(self, run: RunRecord, attempt: AttemptRecord) -> Handle | None:
        for path in self.dir.glob(f"{run.run_id}.{attempt.n}.*.json"):
            if not Path(str(path) + ".ended").exists():
                return {"file": path.name, "where": "sim"}
        return None


def register() -> None:
    """Make ``backend: sim`` runs servable in this process (tests and benchmarks only)."""
    from relaunch.backends import registry

    registry.BACKENDS[NAME] = f"{__name__}:SimBackend"


def sim_record(run_id: str, heartbeat_interval: float = 10.0) -> RunRecord:
    """A run record for the simulated backend (the spec is a plain local job's: the
    simulator runs nothing)."""
    spec = JobSpec(name="fleet", command=["true"], heartbeat_interval=heartbeat_interval)
    return RunRecord(run_id=run_id, name="fleet", queue="default", backend=NAME, spec=spec)


def seed(store: ObjectStore, run_ids: list[str], heartbeat_interval: float, workers: int) -> None:
    """Queue every run the way `relaunch run` does (queue item, then run record)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(rid: str) -> None:
        queue.enqueue(store, sim_record(rid, heartbeat_interval))

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, run_ids))
