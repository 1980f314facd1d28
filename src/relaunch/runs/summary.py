"""A light, read-only projection of run records for listings (`relaunch ps`).

Parsing a full record validates the job spec with pydantic; a listing of a thousand
runs needs a dozen fields of each, so it reads them straight from the JSON.
Standard library only.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from relaunch.errors import ObjectNotFound
from relaunch.runs import keys, live
from relaunch.store.base import ObjectStore

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED", "DAMAGED"})
#: how the detail of a readable run record that was set aside as damaged begins (it
#: ends FAILED: agent/damaged.py); only such a run has a ``damaged.json`` worth reading
SET_ASIDE = "set aside: "
#: States in which the run's current attempt is live: the reason and note its record
#: still holds are those of the attempt before (its end is history — `status`'s
#: attempts, `events` —, not the run's note now)
ATTEMPT_LIVE = frozenset({"RUNNING", "STOPPING"})


def note_is_current(state: str) -> bool:
    """Whether a run record's reason and note say something about the run in ``state``:
    not once a new attempt runs (a recovered run does not stay "transient")."""
    return state not in ATTEMPT_LIVE


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
    set_aside: bool = False

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @classmethod
    def from_json(cls, data: bytes) -> RunSummary:
        """The fields of a record; a ValueError when one has the wrong type (the run is
        then listed as DAMAGED, not the whole listing lost)."""
        d = json.loads(data)
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        return cls(
            run_id=_text(d, "run_id", _MISSING),
            name=_text(d, "name", ""),
            queue=_text(d, "queue", ""),
            backend=_text(d, "backend", ""),
            state=_text(d, "state", "QUEUED"),
            attempt=_whole(d, "attempt", 0),
            recoveries=_whole(d, "recoveries", 0),
            restarts=_whole(d, "restarts", 0),
            where=_text(d, "where", None),
            step=_whole(d, "step", None),
            total=_whole(d, "total", None),
            reason=_text(d, "reason", None),
            note=_text(d, "note", None),
            created_at=_seconds(d, "created_at", 0.0),
            ended_at=_seconds(d, "ended_at", None),
            set_aside=str(d.get("detail") or "").startswith(SET_ASIDE),
        )


# Each field as the record's model reads it (pydantic, lax: "3" is an int there too);
# a ValueError naming the field otherwise.
_MISSING: Any = object()


def _raw(d: dict[str, Any], name: str, default: Any) -> Any:
    value = d.get(name, default)
    if value is _MISSING:
        raise ValueError(f"it has no {name}")
    return value


def _text(d: dict[str, Any], name: str, default: Any) -> Any:
    value = _raw(d, name, default)
    if (value is None and default is None) or isinstance(value, str):
        return value
    raise ValueError(f"its {name} is {type(value).__name__}, not text")


def _whole(d: dict[str, Any], name: str, default: Any) -> Any:
    value = _raw(d, name, default)
    if value is None and default is None:
        return None
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError
        whole = float(value)
        if whole.is_integer():
            return int(whole)
    except (ValueError, OverflowError):
        pass
    raise ValueError(f"its {name} is {str(value)[:20]!r}, not a whole number")


def _seconds(d: dict[str, Any], name: str, default: Any) -> Any:
    value = _raw(d, name, default)
    if value is None and default is None:
        return None
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError
        seconds = float(value)
        if math.isfinite(seconds):
            return seconds
    except ValueError:
        pass
    raise ValueError(f"its {name} is {str(value)[:20]!r}, not a time")


#: Reads at once for a listing on a bucket (each one a round trip): as many as the
#: store's HTTP pool keeps connections for.
VIEW_READERS = 32

Beat = dict[str, Any]


def run_summaries(store: ObjectStore, *, recent: float | None = None) -> list[RunSummary]:
    """Runs in the store, newest first; one whose record is damaged (or was set aside as
    damaged by an agent) is listed as DAMAGED with why, never hidden.

    Every run, or with ``recent`` the runs not over and those that ended in the last
    ``recent`` seconds: from the live index (``runs/live.py``) when the store has one, so
    the view does not grow with history. Records are read concurrently on a bucket."""
    return _view(store, recent, with_heartbeats=False)[0]


def run_view(
    store: ObjectStore, *, recent: float | None = None
) -> tuple[list[RunSummary], dict[str, Beat]]:
    """``run_summaries``, and the current heartbeat of each of those runs not over (one
    that belongs to its current attempt), by run id: what `relaunch ps` shows.

    On a bucket it takes two rounds of requests: the listings (the index's marker,
    ``live/`` — which says which runs have a heartbeat —, ``ended/`` or ``runs/``) go
    out together, then one pool reads every record and heartbeat. (A store without the
    index, written by an older relaunch, then costs a listing of ``runs/`` more.)"""
    return _view(store, recent, with_heartbeats=True)


def _view(
    store: ObjectStore, recent: float | None, with_heartbeats: bool
) -> tuple[list[RunSummary], dict[str, Beat]]:
    ids, beating = _listed(store, recent, with_heartbeats)
    tasks = [(run_id, False) for run_id in ids] + [(run_id, True) for run_id in beating]

    def read(task: tuple[str, bool]) -> RunSummary | Beat | None:
        run_id, heartbeat = task
        return _heartbeat(store, run_id) if heartbeat else _summary(store, run_id)

    found = live.read_many(store, tasks, read, readers=VIEW_READERS)
    runs = {s.run_id: s for s in found if isinstance(s, RunSummary)}
    beats: dict[str, Beat] = {}
    for (run_id, heartbeat), hb in zip(tasks, found, strict=True):
        run = runs.get(run_id)
        if heartbeat and isinstance(hb, dict) and run is not None and _current(run, hb):
            beats[run_id] = hb
    return sorted(runs.values(), key=lambda r: r.created_at, reverse=True), beats


def _current(run: RunSummary, hb: Beat) -> bool:
    """Whether ``hb`` is the heartbeat of the run's current attempt, and it is not over."""
    return not run.terminal and hb.get("attempt") == run.attempt


def _listed(
    store: ObjectStore, recent: float | None, with_heartbeats: bool
) -> tuple[list[str], list[str]]:
    """The run ids a view reads, and those of them with a heartbeat (when wanted)."""
    jobs: dict[str, Callable[[], object]] = {}
    if recent is not None:
        jobs["index"] = lambda: live.index_ready(store)
        jobs["ended"] = lambda: live.ended_ids(store, within=recent)
    else:
        jobs["runs"] = lambda: _every_run(store)
    if recent is not None or with_heartbeats:
        jobs["live"] = lambda: live.scan(store)
    done = dict(
        zip(jobs, live.read_many(store, list(jobs.values()), lambda job: job()), strict=True)
    )
    scanned = cast("dict[str, live.LiveRun]", done.get("live", {}))
    if recent is not None and done["index"]:
        ids = sorted(set(scanned) | set(cast("list[str]", done["ended"])))
    else:
        ids = cast("list[str]", done["runs"]) if "runs" in done else _every_run(store)
    listed = set(ids)
    beating = [i for i, run in scanned.items() if run.heartbeat is not None and i in listed]
    return ids, sorted(beating) if with_heartbeats else []


def _every_run(store: ObjectStore) -> list[str]:
    prefixes = store.list("runs/", delimiter="/").prefixes
    ids = [p[len("runs/") : -1] for p in prefixes]
    return [i for i in ids if keys.RUN_ID_RE.match(i)]


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
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        summary, why = None, f"run.json is damaged ({type(e).__name__}: {e})"[:200]
    # A run set aside as damaged is FAILED, and says so, when its record is readable:
    # any other run needs no second read.
    if summary is None or (summary.state == "FAILED" and summary.set_aside):
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


def _heartbeat(store: ObjectStore, run_id: str) -> Beat | None:
    """The run's heartbeat as the runtime wrote it (None when absent or unreadable: a
    damaged heartbeat shows as none, it does not stop the listing)."""
    try:
        data, _ = store.get(keys.heartbeat_key(run_id))
        hb = json.loads(data)
    except (ObjectNotFound, ValueError):
        return None
    ok = isinstance(hb, dict) and isinstance(hb.get("time"), (int, float))
    return hb if ok else None
