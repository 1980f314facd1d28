"""The queue: ``queues/<queue>/<prio>-<enqueued_ns>-<run_id>.json`` items.

Enqueueing writes the run's live-index entry (``runs/live.py``) first, then the item (a
full snapshot of the run record), then the run record, so a crash in between leaves a
queued item that the claiming agent completes, never a run that nobody will start. An
agent may claim the item between the last two writes and create the record from it:
the record then carries the submission's ``nonce``, which tells the enqueuer the record
is its own. Items sort by priority, then time.
"""

from __future__ import annotations

import json
import os
import time

from relaunch import faults
from relaunch.errors import ObjectNotFound, PreconditionFailed, UserInputError
from relaunch.runs import keys, live
from relaunch.runs.records import RunRecord
from relaunch.store.base import ObjectStore


def _taken(run_id: str) -> UserInputError:
    return UserInputError(
        f"run id {run_id!r} is already taken",
        hint=f"continue that run from its last checkpoint with `relaunch resume {run_id} "
        "[JOB.yaml]`, or choose another run_id (omit it to get a fresh one)",
    )


def enqueue(store: ObjectStore, record: RunRecord) -> str:
    """Queue a new run. Fails if the run id is already taken."""
    if store.stat(keys.run_key(record.run_id)) is not None:
        raise _taken(record.run_id)
    record.nonce = record.nonce or os.urandom(8).hex()
    # The index entry first: a run that exists is always found by a listing of live/.
    # An enqueuer that dies before its record leaves an entry alone; agents prune it.
    live.add(
        store,
        record.run_id,
        queue=record.queue,
        backend=record.backend,
        created_at=record.created_at,
    )
    faults.hit("enqueue-after-live-entry")
    key = keys.queue_item_key(record.queue, record.priority, time.time_ns(), record.run_id)
    data = record.model_dump_json(exclude_none=True).encode()
    store.put(key, data, if_generation_match=0)
    try:
        store.put(keys.run_key(record.run_id), data, if_generation_match=0)
    except PreconditionFailed:
        if _nonce_of(store, record.run_id) == record.nonce:
            ring(store, record.queue)
            return key  # an agent claimed the item first and wrote this very record
        store.delete(key)
        raise _taken(record.run_id) from None
    ring(store, record.queue)
    return key


def ring(store: ObjectStore, queue: str) -> None:
    """Tell agents on a bucket that the queue has a new item (they also list it once a
    minute, so an enqueuer that dies before this loses nothing)."""
    store.put(keys.queue_bell_key(queue), b"")


def requeue(store: ObjectStore, record: RunRecord) -> str:
    """A new queue item for an existing run (a resumed one): a snapshot of ``record``,
    whose nonce the claiming agent checks against the run record."""
    key = keys.queue_item_key(record.queue, record.priority, time.time_ns(), record.run_id)
    store.put(key, record.model_dump_json(exclude_none=True).encode(), if_generation_match=0)
    ring(store, record.queue)
    return key


def _nonce_of(store: ObjectStore, run_id: str) -> str | None:
    try:
        data, _ = store.get(keys.run_key(run_id))
        nonce = json.loads(data).get("nonce")
    except (ObjectNotFound, ValueError, AttributeError):
        return None
    return nonce if isinstance(nonce, str) else None


def items(store: ObjectStore, queue: str) -> list[str]:
    """Queue item keys, first to run first (any other object in the queue's folder,
    a stray file, is passed over)."""
    return [
        m.key for m in store.list(keys.queue_prefix(queue)).objects if keys.is_queue_item(m.key)
    ]


def remove_items_of(store: ObjectStore, queue: str, run_id: str) -> None:
    for key in items(store, queue):
        if keys.run_id_of_queue_item(key) == run_id:
            store.delete(key)
