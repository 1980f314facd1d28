"""A damaged record that its run's own error handling does not see — read ahead, in the
adoption scan, in a listing — still affects that run alone: the agent looks at every
other run, claims and adopts, and `ps` lists the rest."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from relaunch.agent.loop import Agent, AgentOptions
from relaunch.backends import registry
from relaunch.backends.base import AttemptStatus, Backend, Handle, SubmitContext
from relaunch.errors import BackendError
from relaunch.runs import keys, live, queue
from relaunch.runs.records import AttemptRecord, RunRecord
from relaunch.runs.repo import RunRepo
from relaunch.runs.summary import run_summaries
from relaunch.spec.job import JobSpec
from relaunch.states import AttemptState, RunState
from relaunch.store import LocalStore
from tests.unit.test_agent_threads import InTurnBackend, _orphans


class StrictHandleBackend(Backend):
    """Thread-safe, so the agent polls it ahead of reconciling; like a cloud backend, it
    reads its handle's fields without asking first."""

    name = "strict-handle"
    thread_safe = True
    poll_interval = 0.0

    def submit(self, run: RunRecord, attempt: AttemptRecord, ctx: SubmitContext) -> Handle:
        return {"project": "p", "name": run.run_id, "where": "here"}

    def poll(self, handle: Handle) -> AttemptStatus:
        handle["project"]  # a KeyError for a damaged handle
        return AttemptStatus(AttemptState.RUNNING)

    def cancel(self, handle: Handle, grace: float) -> None:
        pass


@pytest.fixture(autouse=True)
def _backends(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for cls in (StrictHandleBackend, InTurnBackend):
        monkeypatch.setitem(registry.BACKENDS, cls.name, f"{__name__}:{cls.__name__}")
        monkeypatch.delitem(registry._instances, cls.name, raising=False)
    yield


def _enqueue(store: LocalStore, run_id: str, backend: str) -> None:
    spec = JobSpec(name="t", command=["true"])
    queue.enqueue(
        store, RunRecord(run_id=run_id, name="t", queue="default", backend=backend, spec=spec)
    )


def test_a_handle_that_breaks_the_read_ahead_does_not_freeze_the_agents_other_runs(
    tmp_path: Any,
) -> None:
    store = LocalStore(tmp_path / "store")
    _enqueue(store, "good", "strict-handle")
    _enqueue(store, "bad", "strict-handle")
    logs: list[str] = []
    agent = Agent(store, AgentOptions(lease_ttl=60), agent_id="a", log=logs.append)
    agent.tick()
    assert sorted(agent.owned) == ["bad", "good"]
    # "bad"'s attempt record: valid JSON and a valid model, its handle without "project"
    attempt_key = keys.attempt_key("bad", 1)
    attempt = json.loads(store.get(attempt_key)[0])
    attempt["handle"] = {"name": "bad", "where": "here"}
    store.put(attempt_key, json.dumps(attempt).encode())
    agent.repo.forget("bad")

    RunRepo(store).request_stop("good", by="user")
    for _ in range(3):
        agent.tick()  # raised KeyError from the read-ahead, before reconciling any run
    assert RunRepo(store).get_run("good").state in (RunState.STOPPING, RunState.STOPPED)
    assert "bad" in agent._sick  # its own error, backed off and logged once
    assert sum("internal error" in line for line in logs) == 1


def test_a_damaged_record_in_the_adoption_scan_stops_neither_adoption_nor_claims(
    tmp_path: Any,
) -> None:
    root = tmp_path / "store"
    store = LocalStore(root)
    live.build_index(store, "setup")
    _orphans(store, "zz-orphan")  # its agent died
    # a run that ended long ago, its record JSON of the wrong shape, a stop signal left
    # under live/ (what `relaunch stop` of an ended run writes)
    store.put(keys.run_key("aa-damaged"), b'{"run_id": "aa-damaged", "state": []}')
    store.put(keys.stop_signal_key("aa-damaged"), b'{"by": "user"}')
    old = time.time() - 3600
    os.utime(root / keys.stop_signal_key("aa-damaged"), (old, old))
    _enqueue(store, "new-run", "in-turn")

    adopter = Agent(store, AgentOptions(lease_ttl=60), agent_id="adopter", log=lambda _: None)
    adopter.tick()  # raised TypeError at aa-damaged: no adoption after it, no claim
    assert sorted(adopter.owned) == ["new-run", "zz-orphan"]


def test_a_record_nested_past_the_parser_is_unreadable_not_a_crash(tmp_path: Any) -> None:
    root = tmp_path / "store"
    store = LocalStore(root)
    live.build_index(store, "setup")
    store.put(keys.run_key("deep"), b"[" * 100_000 + b"]" * 100_000)
    store.put(keys.stop_signal_key("deep"), b'{"by": "user"}')
    old = time.time() - 3600
    os.utime(root / keys.stop_signal_key("deep"), (old, old))
    _enqueue(store, "new-run", "in-turn")
    adopter = Agent(store, AgentOptions(lease_ttl=60), agent_id="adopter", log=lambda _: None)
    adopter.tick()
    assert "new-run" in adopter.owned
    listed = {r.run_id: r.state for r in run_summaries(store)}
    assert listed["deep"] == "DAMAGED"


@pytest.mark.parametrize(
    "bad",
    [
        b'{"run_id": "bad", "created_at": "yesterday"}',
        b'{"run_id": "bad", "state": []}',
        b'{"run_id": "bad", "attempt": "one"}',
        b'{"run_id": "bad", "ended_at": NaN}',
        b'{"run_id": 7}',
        b"[1, 2]",
    ],
)
def test_a_record_with_a_field_of_the_wrong_type_is_listed_as_damaged(
    tmp_path: Any, bad: bytes
) -> None:
    store = LocalStore(tmp_path / "store")
    store.put(keys.run_key("good"), b'{"run_id": "good", "state": "RUNNING", "created_at": 1.0}')
    store.put(keys.run_key("bad"), bad)
    listed = {r.run_id: r for r in run_summaries(store)}  # raised on sorting or .terminal
    assert listed["good"].state == "RUNNING"
    assert listed["bad"].state == "DAMAGED"
    assert listed["bad"].terminal


def test_a_field_the_records_model_would_accept_is_read_as_it_would_be(tmp_path: Any) -> None:
    store = LocalStore(tmp_path / "store")
    store.put(
        keys.run_key("lax"), b'{"run_id": "lax", "attempt": "2", "step": 3.0, "created_at": 5}'
    )
    (found,) = run_summaries(store)
    assert (found.state, found.attempt, found.step, found.created_at) == ("QUEUED", 2, 3, 5.0)


class CancelOnceFails(Backend):
    """Its first cancel fails (the cloud did not answer); it notes the others."""

    name = "cancel-once-fails"
    cancelled: list[str] = []
    failures = 1

    def submit(self, run: RunRecord, attempt: AttemptRecord, ctx: SubmitContext) -> Handle:
        return {"name": run.run_id, "where": "here"}

    def poll(self, handle: Handle) -> AttemptStatus:
        return AttemptStatus(AttemptState.RUNNING)

    def cancel(self, handle: Handle, grace: float) -> None:
        if CancelOnceFails.failures:
            CancelOnceFails.failures -= 1
            raise BackendError("the cloud did not answer", reason="transient")
        self.cancelled.append(str(handle["name"]))


def test_a_run_set_aside_whose_cancel_failed_is_cancelled_at_the_next_scan(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.BACKENDS, CancelOnceFails.name, f"{__name__}:CancelOnceFails")
    monkeypatch.delitem(registry._instances, CancelOnceFails.name, raising=False)
    CancelOnceFails.cancelled, CancelOnceFails.failures = [], 1
    store = LocalStore(tmp_path / "store")
    live.build_index(store, "setup")
    _enqueue(store, "r", CancelOnceFails.name)
    logs: list[str] = []
    agent = Agent(store, AgentOptions(lease_ttl=60), agent_id="a", log=logs.append)
    agent.tick()
    assert "r" in agent.owned
    store.put(keys.run_key("r"), b'{"run_id": "r", "sta')  # cut off
    agent.repo.forget("r")
    agent.tick()  # set aside, the cancel of its trainer failed
    assert store.stat(keys.damaged_key("r")) is not None
    assert CancelOnceFails.cancelled == []
    assert "r" not in agent.owned
    assert live.entry(store, "r") is not None  # so that a scan finds it again
    agent._next_adopt = 0.0
    agent.tick()  # was taken for set aside: the trainer ran on, nobody watching
    assert CancelOnceFails.cancelled == ["r"]
    assert live.entry(store, "r") is None
    assert RunRepo(store).unsettled_damage("r") is None
    assert {r.run_id: r.state for r in run_summaries(store)}["r"] == "DAMAGED"
    agent._next_adopt = 0.0
    agent.tick()
    assert CancelOnceFails.cancelled == ["r"]  # once
    assert sum("could not cancel" in line for line in logs) == 1


def test_a_set_aside_cut_short_by_a_dead_agent_is_finished_by_the_next(tmp_path: Any) -> None:
    store = LocalStore(tmp_path / "store")
    live.build_index(store, "setup")
    _orphans(store, "r")  # its agent died…
    repo = RunRepo(store)
    store.put(keys.attempt_key("r", 1), b"\x00\x01")
    assert repo.mark_damaged("r", "cut off", "first", settled=False)  # …setting it aside
    adopter = Agent(store, AgentOptions(lease_ttl=60), agent_id="adopter", log=lambda _: None)
    adopter.tick()  # adopts it
    adopter.tick()  # reconciling it, finds the attempt damaged
    assert repo.get_run("r").state is RunState.FAILED
    assert repo.unsettled_damage("r") is None
    assert live.entry(store, "r") is None
    assert "r" not in adopter.owned


@pytest.mark.parametrize(
    "stray", ["notes.json", "README", "1-2-x.json", "0-00000000000000000001-Bad.json"]
)
def test_a_stray_object_in_a_queues_folder_is_passed_over(tmp_path: Any, stray: str) -> None:
    store = LocalStore(tmp_path / "store")
    live.build_index(store, "setup")
    _orphans(store, "orphan")
    store.put(keys.queue_prefix("default") + stray, b"{}")
    _enqueue(store, "new-run", "in-turn")
    adopter = Agent(store, AgentOptions(lease_ttl=60), agent_id="adopter", log=lambda _: None)
    adopter.tick()  # raised IndexError listing the queue: nothing claimed nor adopted
    assert sorted(adopter.owned) == ["new-run", "orphan"]
