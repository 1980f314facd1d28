"""The live-run index (runs/live.py) on both stores: one listing tells what is live,
`ps`'s default view reads only those runs, and the same answers come from a folder and
from a bucket (listed in pages)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from relaunch.runs import keys, live
from relaunch.runs.summary import run_summaries
from relaunch.store import LocalStore
from relaunch.store.base import ObjectStore
from relaunch.store.gcs import GCSStore
from tests.fakegcp.fake import FakeGCP


def record(run_id: str, state: str, **extra: object) -> bytes:
    return json.dumps({"run_id": run_id, "state": state, "created_at": 1.0, **extra}).encode()


def seed(store: ObjectStore) -> None:
    """Two live runs, one ended in the last day, one long ago, one damaged."""
    for run_id in ("live-a", "live-b"):
        live.add(store, run_id, queue="q", backend="local", created_at=1.0)
        store.put(keys.run_key(run_id), record(run_id, "RUNNING", attempt=1))
    store.put(keys.heartbeat_key("live-a"), json.dumps({"attempt": 1, "time": 5.0}).encode())
    store.put(keys.stop_signal_key("live-b"), b"{}")
    store.put(keys.run_key("recent"), record("recent", "SUCCEEDED", ended_at=time.time()))
    live.ended(store, "recent", ended_at=time.time(), entry_generation=0)
    store.put(keys.run_key("old"), record("old", "SUCCEEDED", ended_at=1.0))
    store.put(keys.run_key("broken"), b'{"run_id": "bro')
    store.put(keys.damaged_key("broken"), json.dumps({"why": "it is cut short"}).encode())
    live.ended(store, "broken", ended_at=time.time(), entry_generation=0)
    store.put(keys.INDEX_KEY, b"{}")
    store.put("live/NOT-A-RUN/run", b"{}")  # not ours: ignored


@pytest.fixture(params=["local", "gcs"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    fake: FakeGCP = request.getfixturevalue("fake_gcp")
    fake.gcs.create_bucket("b")
    fake.gcs.max_page_size = 2  # every listing takes several pages
    return GCSStore("gs://b/root", retry_initial=0.01)


def test_one_listing_says_what_is_live(store: ObjectStore) -> None:
    seed(store)
    found = live.scan(store)
    assert set(found) == {"live-a", "live-b"}
    a, b = found["live-a"], found["live-b"]
    assert a.entry and a.heartbeat and a.stop is None
    assert b.entry and b.heartbeat is None and b.stop
    assert a.heartbeat.key == keys.heartbeat_key("live-a") == "live/live-a/heartbeat.json"
    assert sorted(live.live_ids(store)) == ["live-a", "live-b"]
    assert sorted(live.ended_ids(store)) == ["broken", "recent"]
    assert live.ended_ids(store, within=-1) == []


def test_ps_default_view_reads_only_live_and_recent_runs(store: ObjectStore) -> None:
    seed(store)
    listed = {s.run_id: s.state for s in run_summaries(store, recent=live.ENDED_FOR)}
    assert listed == {"live-a": "RUNNING", "live-b": "RUNNING", "recent": "SUCCEEDED",
                      "broken": "DAMAGED"}  # fmt: skip
    everything = {s.run_id: s.state for s in run_summaries(store)}
    assert everything == {**listed, "old": "SUCCEEDED"}
    store.delete(keys.INDEX_KEY)  # a store an older relaunch wrote: every record is read
    assert {s.run_id for s in run_summaries(store, recent=live.ENDED_FOR)} == set(everything)


def test_build_index_over_a_store_without_one(store: ObjectStore) -> None:
    now = time.time()
    store.put(keys.run_key("running"), record("running", "RUNNING"))
    store.put(keys.run_key("queued"), record("queued", "QUEUED", queue="q", backend="gce"))
    store.put(keys.run_key("ending"), record("ending", "FAILED", ended_event=False))
    store.put(keys.run_key("done"), record("done", "STOPPED", ended_at=now - 60))
    store.put(keys.run_key("ancient"), record("ancient", "SUCCEEDED", ended_at=now - 9e5))
    store.put(keys.run_key("garbled"), b"not json")
    assert not live.index_ready(store)
    assert live.build_index(store, "test") == 4
    assert live.index_ready(store)
    assert set(live.scan(store)) == {"running", "queued", "ending", "garbled"}
    entry = json.loads(store.get(keys.live_key("queued"))[0])
    assert entry == {"queue": "q", "backend": "gce", "created_at": 1.0}
    assert live.ended_ids(store) == ["done"]
    assert live.build_index(store, "again") == 0  # a second builder finds them indexed
    assert set(live.scan(store)) == {"running", "queued", "ending", "garbled"}
