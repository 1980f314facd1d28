"""A light, read-only projection of run records for listings (`relaunch ps`).

Parsing a full record validates the job spec with pydantic; a listing of a thousand
runs needs a dozen fields of each, so it reads them straight from the JSON.
Standard library only.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from relaunch.errors import ObjectNotFound
from relaunch.runs import keys, live
from relaunch.store.base import ObjectStore

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED", "DAMAGED"})


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    name: str
    queue: str
    backend: str
    state: str
    attempt: int
    recoveries: int
    restarts: int
    where: str | None
    step: int | None
    total: int | None
    reason: str | None
    note: str | None
    created_at: float
    ended_at: float | None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @classmethod
    def from_json(cls, data: bytes) -> RunSummary:
        d = json.loads(data)
        return cls(
            run_id=d["run_id"],
            name=d.get("name", ""),
            queue=d.get("queue", ""),
            backend=d.get("backend", ""),
            state=d.get("state", "QUEUED"),
            attempt=d.get("attempt", 0),
            recoveries=d.get("recoveries", 0),
            restarts=d.get("restarts", 0),
            where=d.get("where"),
            step=d.get("step"),
            total=d.get("total"),
            reason=d.get("reason"),
            note=d.get("note"),
            created_at=d.get("created_at", 0.0),
            ended_at=d.get("ended_at"),
        )


def run_summaries(store: ObjectStore, *, recent: float | None = None) -> list[RunSummary]:
    """Runs in the store, newest first; one whose record is damaged (or was set aside as
    damaged by an agent) is listed as DAMAGED with why, never hidden.

    Every run, or with ``recent`` the runs not over and those that ended in the last
    ``recent`` seconds: from the live index (``runs/live.py``) when the store has one, so
    the view does not grow with history. Records are read concurrently on a bucket."""
    if recent is not None and live.index_ready(store):
        ids = sorted(set(live.live_ids(store)) | set(live.ended_ids(store, within=recent)))
    else:
        prefixes = store.list("runs/", delimiter="/").prefixes
        ids = [p[len("runs/") : -1] for p in prefixes]
        ids = [i for i in ids if keys.RUN_ID_RE.match(i)]
    found = live.read_many(store, ids, lambda run_id: _summary(store, run_id))
    out = [s for s in found if s is not None]
    return sorted(out, key=lambda r: r.created_at, reverse=True)


def _summary(store: ObjectStore, run_id: str) -> RunSummary | None:
    try:
        data, _ = store.get(keys.run_key(run_id))
    except ObjectNotFound:
        data = None
    summary: RunSummary | None = None
    why: str | None = None
    try:
        summary = RunSummary.from_json(data) if data is not None else None
        if summary is not None and summary.run_id != run_id:
            raise ValueError(f"it names another run, {summary.run_id!r}")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        summary, why = None, f"run.json is damaged ({type(e).__name__}: {e})"[:200]
    # A run set aside as damaged is FAILED when its record is readable: a live run, or
    # one that succeeded or was stopped, needs no second read.
    if summary is None or summary.state == "FAILED":
        why = _damaged_why(store, run_id) or why
    if summary is None and why is None:
        return None  # a run being created (an entry without a record yet), or deleted
    if why is not None:
        return _damaged(store, run_id, why, summary)
    return summary


def _damaged_why(store: ObjectStore, run_id: str) -> str | None:
    try:
        data, _ = store.get(keys.damaged_key(run_id))
        return str(json.loads(data).get("why", "damaged"))
    except ObjectNotFound:
        return None
    except (ValueError, AttributeError):
        return "damaged"


def _damaged(store: ObjectStore, run_id: str, why: str, known: RunSummary | None) -> RunSummary:
    meta = store.stat(keys.damaged_key(run_id)) or store.stat(keys.run_key(run_id))
    when = meta.updated_ns / 1e9 if meta and meta.updated_ns > 1e18 else time.time()
    return RunSummary(
        run_id=run_id,
        name=known.name if known else "?",
        queue=known.queue if known else "?",
        backend=known.backend if known else "?",
        state="DAMAGED",
        attempt=known.attempt if known else 0,
        recoveries=known.recoveries if known else 0,
        restarts=known.restarts if known else 0,
        where=known.where if known else None,
        step=known.step if known else None,
        total=known.total if known else None,
        reason="damaged",
        note=why,
        created_at=known.created_at if known else when,
        ended_at=when,
    )


def live_heartbeats(
    store: ObjectStore, runs: list[RunSummary]
) -> dict[str, dict[str, float | int | None]]:
    """The current heartbeat of each run not over, by run id (read concurrently on a
    bucket)."""
    active = [r for r in runs if not r.terminal]
    found = live.read_many(store, active, lambda run: live_heartbeat(store, run))
    return {run.run_id: hb for run, hb in zip(active, found, strict=True) if hb is not None}


def live_heartbeat(store: ObjectStore, run: RunSummary) -> dict[str, float | int | None] | None:
    """The run's heartbeat if it belongs to its current attempt."""
    try:
        data, _ = store.get(keys.heartbeat_key(run.run_id))
    except ObjectNotFound:
        return None
    hb = json.loads(data)
    return hb if hb.get("attempt") == run.attempt else None
