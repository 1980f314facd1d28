"""A light, read-only projection of run records for listings (`relaunch ps`).

Parsing a full record validates the job spec with pydantic; a listing of a thousand
runs needs a dozen fields of each, so it reads them straight from the JSON.
Standard library only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from relaunch.errors import ObjectNotFound
from relaunch.runs import keys
from relaunch.store.base import ObjectStore

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


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


def run_summaries(store: ObjectStore) -> list[RunSummary]:
    """Every run in the store, newest first."""
    out = []
    for prefix in store.list("runs/", delimiter="/").prefixes:
        if not keys.RUN_ID_RE.match(prefix[len("runs/") : -1]):
            continue
        try:
            data, _ = store.get(prefix + "run.json")
            summary = RunSummary.from_json(data)
        except (ObjectNotFound, ValueError, KeyError, TypeError):
            continue  # a damaged record must not hide every other run
        if summary.run_id == prefix[len("runs/") : -1]:
            out.append(summary)
    return sorted(out, key=lambda r: r.created_at, reverse=True)


def live_heartbeat(store: ObjectStore, run: RunSummary) -> dict[str, float | int | None] | None:
    """The run's heartbeat if it belongs to its current attempt."""
    try:
        data, _ = store.get(keys.heartbeat_key(run.run_id))
    except ObjectNotFound:
        return None
    hb = json.loads(data)
    return hb if hb.get("attempt") == run.attempt else None
