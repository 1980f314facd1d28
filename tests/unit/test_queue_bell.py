"""On a bucket an agent lists a queue only when its bell rang (agent/claim.py Bells)."""

from __future__ import annotations

from pathlib import Path

from relaunch.agent.claim import Bells
from relaunch.runs import keys, queue
from relaunch.runs.records import RunRecord
from relaunch.spec.job import JobSpec
from relaunch.store.local import LocalStore


def test_a_queue_is_listed_when_its_bell_rings_and_not_otherwise(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    bells = Bells(store, every_tick=False)
    assert bells.due("default")  # never listed
    assert not bells.due("default") and not bells.due("default")
    queue.ring(store, "default")  # what every enqueue does after writing its item
    assert bells.due("default")
    assert not bells.due("default")
    bells.backlog("default")  # items left behind (this agent was full)
    assert bells.due("default")
    assert not bells.due("default")


def test_a_queue_is_listed_at_least_every_minute_without_a_bell(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    bells = Bells(store, every_tick=False)
    bells.RELIST = 0.0  # an enqueuer that died between its item and the bell
    assert bells.due("default") and bells.due("default")


def test_enqueue_rings_after_the_item_is_written(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    spec = JobSpec.model_validate({"name": "t", "command": ["true"]})
    record = RunRecord(run_id="r-1", name="t", queue="default", backend="local", spec=spec)
    bells = Bells(store, every_tick=False)
    assert bells.due("default") and not bells.due("default")
    queue.enqueue(store, record)
    assert store.stat(keys.queue_bell_key("default")) is not None
    assert bells.due("default")
    assert [keys.run_id_of_queue_item(k) for k in queue.items(store, "default")] == ["r-1"]
