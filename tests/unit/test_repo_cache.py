"""An agent's RunRepo keeps records it owns validated in memory: a cached read costs
no store read, no parse and no validation, and no caller can change what the next
one gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from relaunch.errors import DamagedRecord, PreconditionFailed
from relaunch.runs import keys, repo
from relaunch.runs.records import AttemptRecord, RunRecord
from relaunch.runs.repo import RunRepo
from relaunch.spec.job import JobSpec
from relaunch.store import LocalStore


class CountingStore(LocalStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gets = 0

    def get(self, key: str) -> Any:
        self.gets += 1
        return super().get(key)


@pytest.fixture
def store(tmp_path: Path) -> CountingStore:
    return CountingStore(tmp_path / "store")


def _run(store: CountingStore) -> RunRepo:
    spec = JobSpec(name="t", command=["python", "train.py"], env={"A": "1"})
    RunRepo(store).create_run(
        RunRecord(run_id="r-1", name="t", queue="default", backend="local", spec=spec)
    )
    store.gets = 0
    return RunRepo(store, cache_ttl=60.0)


def test_a_cached_read_costs_no_store_read(store: CountingStore) -> None:
    runs = _run(store)
    first = runs.get_run("r-1", cached=True)
    again = runs.get_run("r-1", cached=True)
    assert store.gets == 1
    assert again == first and again is not first
    runs.get_run("r-1")  # not cached: read again
    assert store.gets == 2


def test_what_a_caller_changes_in_its_copy_stays_its_own(store: CountingStore) -> None:
    runs = _run(store)
    mine = runs.get_run("r-1", cached=True)
    mine.state = mine.state.__class__("RUNNING")
    mine.project["user"] = "someone"
    mine.template_values["lr"] = "0.1"
    fresh = runs.get_run("r-1", cached=True)
    assert fresh.state.value == "QUEUED"
    assert fresh.project == {} and fresh.template_values == {}

    attempt = AttemptRecord(run_id="r-1", n=1, backend="local", handle={"pid": 1})
    runs.put_attempt(attempt, if_generation_match=0)
    a = runs.find_attempt("r-1", 1, cached=True)
    assert a is not None
    a[0].last_lines.append("changed")
    assert a[0].handle is not None
    a[0].handle["pid"] = 2
    b = runs.find_attempt("r-1", 1, cached=True)
    assert b is not None and b[0].last_lines == [] and b[0].handle == {"pid": 1}


def test_a_write_replaces_the_entry_and_a_failed_one_drops_it(store: CountingStore) -> None:
    runs = _run(store)
    record, gen = runs.find_run("r-1", cached=True) or pytest.fail("no run")
    record.note = "written"
    gen2 = runs.put_run(record, if_generation_match=gen)
    got, got_gen = runs.find_run("r-1", cached=True) or pytest.fail("no run")
    assert (got.note, got_gen, store.gets) == ("written", gen2, 1)
    assert runs.cached_fields(keys.run_key("r-1"))["note"] == "written"  # type: ignore[index]

    record.note = "stale"
    with pytest.raises(PreconditionFailed):
        runs.put_run(record, if_generation_match=gen)  # somebody else's generation now
    assert runs.cached_fields(keys.run_key("r-1")) is None
    got, _ = runs.find_run("r-1", cached=True) or pytest.fail("no run")
    assert got.note == "written" and store.gets == 2


def test_cached_fields_parse_once_and_show_the_record(store: CountingStore) -> None:
    runs = _run(store)
    assert runs.cached_fields(keys.run_key("r-1")) is None  # not cached yet
    runs.get_run("r-1", cached=True)
    fields = runs.cached_fields(keys.run_key("r-1"))
    assert fields is not None and fields["run_id"] == "r-1"
    assert runs.cached_fields(keys.run_key("r-1")) is fields


def test_a_damaged_cached_record_stays_damaged(store: CountingStore) -> None:
    runs = _run(store)
    key = keys.run_key("r-1")
    _, gen = store.get(key)
    store.put(key, b'{"run_id": "r-1", "name": ', if_generation_match=gen)
    for _ in range(2):
        with pytest.raises(DamagedRecord):
            runs.get_run("r-1", cached=True)
    assert runs.cached_fields(key) is None


def test_the_suite_catches_a_cached_record_changed_in_place(
    store: CountingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(repo, "_CHECK_CACHE", True)
    runs = _run(store)
    mine = runs.get_run("r-1", cached=True)
    mine.spec.env["A"] = "2"  # nested: shared with the cache, so never do this
    with pytest.raises(AssertionError, match="changed in place"):
        runs.get_run("r-1", cached=True)
