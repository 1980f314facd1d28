"""The live-run index: the runs that are not over, found with one listing, so views and
adoption do not scale with a store's history.

- ``live/<id>/run``: the entry of a run that is not over, ``{"queue", "backend",
  "created_at"}``. Written before the run record and its queue item (enqueue), and by a
  resume before it makes an ended run QUEUED again (and once more right after).
- ``live/<id>/heartbeat.json``: the runtime's heartbeat (``keys.heartbeat_key``).
- ``live/<id>/stop``: a stop *signal* for agents' listings; ``runs/<id>/.stop`` stays
  the truth.
- ``ended/<id>``: a run that ended in the last day, ``{"ended_at"}`` (``ps``'s default
  view); older ones are deleted by agents' adoption scans.
- ``index.json``: ``{"version": 1, "built_at"}`` — the index is complete. The first
  agent that finds it missing builds the index from every record once; a store without
  it (written by an older relaunch) is listed the old way, by reading every record.

When a run ends its agent writes ``ended/<id>``, deletes the stop signal and heartbeat,
and deletes the entry *by the generation it saw before it marked the end*: a resume
that wrote the entry since wins. An entry left by a crash (an agent dying mid-cleanup,
an enqueuer dying before its record) is cleaned by the next adoption scan, only once
it is older than ``SETTLE``, and by generation, so no resume or enqueue in progress is
ever undone.

Standard library only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from relaunch.errors import ObjectNotFound, PreconditionFailed
from relaunch.runs import keys
from relaunch.store.base import ObjectMeta, ObjectStore, dump_json

#: How long ``ended/<id>`` keeps a run in ``relaunch ps``'s default view.
ENDED_FOR = 24 * 3600.0
#: A leftover entry is cleaned only when it is older than this (a resume or an enqueue
#: that wrote it may still be on its way to the record).
SETTLE = 60.0
#: Concurrent reads of one listing on a bucket (the HTTP pool keeps 10 connections).
READERS = 8
INDEX_VERSION = 1

A = TypeVar("A")
T = TypeVar("T")


@dataclass(frozen=True)
class LiveRun:
    """What one listing of ``live/`` says about a run (no object read)."""

    run_id: str
    entry: ObjectMeta | None = None
    heartbeat: ObjectMeta | None = None
    stop: ObjectMeta | None = None


_PARTS = {"run": "entry", "heartbeat.json": "heartbeat", "stop": "stop"}


def scan(store: ObjectStore) -> dict[str, LiveRun]:
    """Every run under ``live/`` with its entry, heartbeat and stop signal, from ONE
    listing (no delimiter, no reads): an agent's tick calls it once."""
    parts: dict[str, dict[str, ObjectMeta]] = {}
    for meta in store.list(keys.LIVE).objects:
        run_id, _, name = meta.key[len(keys.LIVE) :].partition("/")
        field = _PARTS.get(name)
        if field is None:
            continue
        found = parts.get(run_id)
        if found is None:  # a run's first object: its id is checked once
            if not keys.RUN_ID_RE.match(run_id):
                continue
            found = parts[run_id] = {}
        found[field] = meta
    return {run_id: LiveRun(run_id, **found) for run_id, found in parts.items()}


def live_ids(store: ObjectStore) -> list[str]:
    """The run ids with anything under ``live/`` (one listing with a delimiter)."""
    ids = (p[len(keys.LIVE) : -1] for p in store.list(keys.LIVE, delimiter="/").prefixes)
    return [i for i in ids if keys.RUN_ID_RE.match(i)]


def add(store: ObjectStore, run_id: str, *, queue: str, backend: str, created_at: float) -> int:
    """Write (or touch) the run's entry; return its generation."""
    body = {"queue": queue, "backend": backend, "created_at": created_at}
    return store.put(keys.live_key(run_id), dump_json(body))


def entry(store: ObjectStore, run_id: str) -> ObjectMeta | None:
    return store.stat(keys.live_key(run_id))


def ended(store: ObjectStore, run_id: str, *, ended_at: float, entry_generation: int) -> None:
    """The run is over: list it as ended (if that was in the last day), then take it out
    of ``live/``. The entry goes only if it is still the one seen *before* the end was
    marked (``entry_generation``; 0 when there was none): a resume that wrote it since
    wins, and then the new life's heartbeat and stop signal stay too. They are deleted by
    the generations seen before the entry went, so nothing of a later life is."""
    heartbeat = store.stat(keys.heartbeat_key(run_id))
    signal = store.stat(keys.stop_signal_key(run_id))
    if time.time() - ended_at < ENDED_FOR:
        store.put(keys.ended_key(run_id), dump_json({"ended_at": ended_at}))
    if entry_generation:
        try:
            store.delete(keys.live_key(run_id), if_generation_match=entry_generation)
        except PreconditionFailed:
            return  # resumed meanwhile (or already cleaned): its new life keeps live/
    elif store.stat(keys.live_key(run_id)) is not None:
        return  # an entry written since the end was marked: a resume
    for meta in (signal, heartbeat):
        if meta is not None:
            try:
                store.delete(meta.key, if_generation_match=meta.generation)
            except PreconditionFailed:
                pass  # written meanwhile: not the ended life's any more


def ended_ids(store: ObjectStore, within: float = ENDED_FOR) -> list[str]:
    """Runs listed under ``ended/`` that were written in the last ``within`` seconds."""
    since = time.time_ns() - int(within * 1e9)
    out = []
    for meta in store.list(keys.ENDED).objects:
        run_id = meta.key[len(keys.ENDED) :]
        if keys.RUN_ID_RE.match(run_id) and meta.updated_ns >= since:
            out.append(run_id)
    return out


def prune_ended(store: ObjectStore, older_than: float = ENDED_FOR) -> int:
    """Delete ``ended/`` entries older than ``older_than`` (by generation); how many."""
    before = time.time_ns() - int(older_than * 1e9)
    pruned = 0
    for meta in store.list(keys.ENDED).objects:
        if meta.updated_ns < before:
            try:
                store.delete(meta.key, if_generation_match=meta.generation)
                pruned += 1
            except PreconditionFailed:
                pass  # rewritten meanwhile: the run ended again
    return pruned


def settled(meta: ObjectMeta | None, now_ns: int | None = None) -> bool:
    """Whether an object is old enough for a leftover of it to be cleaned."""
    now_ns = now_ns if now_ns is not None else time.time_ns()
    return meta is not None and now_ns - meta.updated_ns > SETTLE * 1e9


def drop_leftover(store: ObjectStore, run: LiveRun) -> None:
    """Clean what a crash left under ``live/`` of a run known to be over (or to have
    no record): only objects older than ``SETTLE``, each by generation."""
    now = time.time_ns()
    for meta in (run.stop, run.heartbeat, run.entry):
        if meta is not None and settled(meta, now):
            try:
                store.delete(meta.key, if_generation_match=meta.generation)
            except PreconditionFailed:
                pass  # written meanwhile: somebody is using it


# -- the index as a whole ---------------------------------------------------------------


def index_ready(store: ObjectStore) -> bool:
    return store.stat(keys.INDEX_KEY) is not None


def read_many(
    store: ObjectStore, items: Iterable[A], read: Callable[[A], T], *, readers: int = READERS
) -> list[T]:
    """``read(item)`` for each item, in order: concurrently (``readers`` at a time) on a
    bucket, where each read is a round trip; one after another on a local store."""
    items = list(items)
    if not store.url.startswith("gs://") or len(items) < 2:
        return [read(n) for n in items]
    from concurrent.futures import ThreadPoolExecutor  # lazy: `ps` on a folder skips it

    with ThreadPoolExecutor(max_workers=min(readers, len(items))) as pool:
        return list(pool.map(read, items))


def _record(store: ObjectStore, run_id: str) -> tuple[str, dict[str, object] | None, bool]:
    """``(run_id, record JSON or None, readable)``."""
    try:
        data, _ = store.get(keys.run_key(run_id))
    except ObjectNotFound:
        return run_id, None, True
    try:
        body = json.loads(data)
    except ValueError:
        return run_id, None, False
    return (run_id, body, True) if isinstance(body, dict) else (run_id, None, False)


def over(record: dict[str, object]) -> bool:
    """Whether a run record (raw JSON) says the run is over and said so (its run-ended
    event written): such a run leaves ``live/``."""
    state = record.get("state")
    return isinstance(state, str) and state in TERMINAL and record.get("ended_event", True) is True


TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


def build_index(store: ObjectStore, by: str) -> int:
    """Index a store written without one: an entry for every run not over (or whose
    record cannot be read: an agent must set it aside), ``ended/<id>`` for runs ended in
    the last day, then ``index.json`` (create-only). Returns how many runs not over it
    indexed (those without an entry yet)."""
    listing = store.list("runs/", delimiter="/").prefixes
    ids = [p[len("runs/") : -1] for p in listing]
    ids = [i for i in ids if keys.RUN_ID_RE.match(i)]
    recent = time.time() - ENDED_FOR

    def index_one(run_id: str) -> int:
        _, record, readable = _record(store, run_id)
        damaged = store.stat(keys.damaged_key(run_id))
        if damaged is not None:
            if damaged.updated_ns / 1e9 >= recent:
                store.put(keys.ended_key(run_id), dump_json({"ended_at": damaged.updated_ns / 1e9}))
            return 0
        if record is None and readable:
            return 0  # no record (yet): its queue item, if any, is claimed the usual way
        if record is not None and over(record):
            ended_at = record.get("ended_at")
            if isinstance(ended_at, (int, float)) and ended_at >= recent:
                store.put(keys.ended_key(run_id), dump_json({"ended_at": ended_at}))
            return 0
        if store.stat(keys.live_key(run_id)) is not None:
            return 0  # indexed already (enqueued by this version of relaunch)
        body = record or {}
        created = body.get("created_at")
        add(
            store,
            run_id,
            queue=str(body.get("queue", "?")),
            backend=str(body.get("backend", "?")),
            created_at=float(created) if isinstance(created, (int, float)) else time.time(),
        )
        return 1

    indexed = sum(read_many(store, ids, index_one))
    try:
        store.put(
            keys.INDEX_KEY,
            dump_json({"version": INDEX_VERSION, "built_at": time.time(), "by": by}),
            if_generation_match=0,
        )
    except PreconditionFailed:
        pass  # another agent finished its build first: both wrote the same entries
    return indexed
