"""The queue: ``queues/<queue>/<prio>-<enqueued_ns>-<run_id>.json`` items.

Enqueueing writes the item (a full snapshot of the run record) first and the run record
second, so a crash in between leaves a queued item that the claiming agent completes,
never a run that nobody will start. Items sort by priority, then time.
"""

from __future__ import annotations

import time

from relaunch.errors import PreconditionFailed, UserInputError
from relaunch.runs import keys
from relaunch.runs.records import RunRecord
from relaunch.store.base import ObjectStore


def enqueue(store: ObjectStore, record: RunRecord) -> str:
    """Queue a new run. Fails if the run id is already taken."""
    if store.stat(keys.run_key(record.run_id)) is not None:
        raise UserInputError(
            f"run id {record.run_id!r} is already taken",
            hint="choose another run_id, or omit it to get a fresh one",
        )
    key = keys.queue_item_key(record.queue, record.priority, time.time_ns(), record.run_id)
    data = record.model_dump_json(exclude_none=True).encode()
    store.put(key, data, if_generation_match=0)
    try:
        store.put(keys.run_key(record.run_id), data, if_generation_match=0)
    except PreconditionFailed:
        store.delete(key)
        raise UserInputError(
            f"run id {record.run_id!r} is already taken",
            hint="choose another run_id, or omit it to get a fresh one",
        ) from None
    return key


def items(store: ObjectStore, queue: str) -> list[str]:
    """Queue item keys, first to run first."""
    return [m.key for m in store.list(keys.queue_prefix(queue)).objects if m.key.endswith(".json")]


def remove_items_of(store: ObjectStore, queue: str, run_id: str) -> None:
    for key in items(store, queue):
        if keys.run_id_of_queue_item(key) == run_id:
            store.delete(key)
