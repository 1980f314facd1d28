"""On a bucket an agent claims and reconciles runs from a pool of threads
(agent/workers.py) — only those of backends that allow it (``Backend.thread_safe``)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from relaunch.agent.loop import Agent, AgentOptions
from relaunch.backends import registry
from relaunch.backends.base import AttemptStatus, Backend, Handle, SubmitContext
from relaunch.errors import StoreError
from relaunch.runs import agents, keys, leases, queue
from relaunch.runs.records import AttemptRecord, RunRecord
from relaunch.runs.repo import RunRepo
from relaunch.spec.job import JobSpec
from relaunch.states import AttemptState
from relaunch.store import LocalStore
from relaunch.store.base import ObjectStore
from tests.conftest import STORE_KINDS

RUNS = 4


class GatedBackend(Backend):
    """Thread-safe; each submission waits until all ``RUNS`` are being submitted at
    once (one after another, the first waits in vain and fails)."""

    name = "gated"
    thread_safe = True
    gate = threading.Barrier(RUNS, timeout=60)

    def submit(self, run: RunRecord, attempt: AttemptRecord, ctx: SubmitContext) -> Handle:
        self.gate.wait()
        return {"run": run.run_id, "where": "gated"}

    def poll(self, handle: Handle) -> AttemptStatus:
        return AttemptStatus(AttemptState.RUNNING)

    def cancel(self, handle: Handle, grace: float) -> None:
        pass


class InTurnBackend(Backend):
    """Not thread-safe: notes the thread of every call."""

    name = "in-turn"
    threads: list[str] = []

    def submit(self, run: RunRecord, attempt: AttemptRecord, ctx: SubmitContext) -> Handle:
        self.threads.append(threading.current_thread().name)
        return {"run": run.run_id, "where": "in-turn"}

    def poll(self, handle: Handle) -> AttemptStatus:
        self.threads.append(threading.current_thread().name)
        return AttemptStatus(AttemptState.RUNNING)

    def cancel(self, handle: Handle, grace: float) -> None:
        self.threads.append(threading.current_thread().name)


@pytest.fixture
def bucket(tmp_path: Any, request: pytest.FixtureRequest) -> ObjectStore:
    return STORE_KINDS["gcs"](tmp_path, request)


@pytest.fixture(autouse=True)
def _backends(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for cls in (GatedBackend, InTurnBackend):
        monkeypatch.setitem(registry.BACKENDS, cls.name, f"{__name__}:{cls.__name__}")
        monkeypatch.delitem(registry._instances, cls.name, raising=False)
    GatedBackend.gate.reset()
    InTurnBackend.threads.clear()
    yield


def _queue(store: ObjectStore, backend: str) -> list[str]:
    ids = [f"{backend}-{n}" for n in range(RUNS)]
    for run_id in ids:
        spec = JobSpec(name="t", command=["true"])
        queue.enqueue(
            store, RunRecord(run_id=run_id, name="t", queue="default", backend=backend, spec=spec)
        )
    return ids


def _handles(store: ObjectStore, ids: list[str]) -> dict[str, Any]:
    repo = RunRepo(store)
    found = {run_id: repo.find_attempt(run_id, 1) for run_id in ids}
    return {run_id: a[0].handle for run_id, a in found.items() if a is not None}


def test_runs_of_a_thread_safe_backend_are_started_at_once(bucket: ObjectStore) -> None:
    ids = _queue(bucket, "gated")
    agent = Agent(bucket, AgentOptions(max_jobs=RUNS, lease_ttl=60), agent_id="threads")
    try:
        agent.tick()  # claims the four runs; their submissions meet at the gate
        assert sorted(agent.owned) == sorted(ids)
        handles = _handles(bucket, ids)
        assert all(handles.get(r) == {"run": r, "where": "gated"} for r in ids), handles
        agent.tick()  # and are looked at again, still all held
        assert sorted(agent.owned) == sorted(ids)
    finally:
        agent.workers.close()


def test_a_backend_that_is_not_thread_safe_is_called_from_the_agents_thread_only(
    bucket: ObjectStore,
) -> None:
    ids = _queue(bucket, "in-turn")
    agent = Agent(bucket, AgentOptions(max_jobs=RUNS, lease_ttl=60), agent_id="in-turn")
    try:
        agent.tick()
        agent.tick()
    finally:
        agent.workers.close()
    assert sorted(_handles(bucket, ids)) == sorted(ids)
    assert len(InTurnBackend.threads) >= RUNS  # every run submitted (and polled)
    assert set(InTurnBackend.threads) == {threading.current_thread().name}


def test_a_lease_taken_while_the_agent_was_found_dead_is_let_go(
    bucket: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One thread takes a lease while another's renewal learns the agent was found dead:
    the lease names an epoch that is over, so the run is not the agent's to manage."""
    agent = Agent(bucket, AgentOptions(lease_ttl=60), agent_id="raced", log=lambda _: None)
    real = leases.acquire

    def acquire_then_found_dead(*args: Any, **kwargs: Any) -> leases.Lease | None:
        lease = real(*args, **kwargs)
        agent._found_dead()  # as another thread's renewal would, meanwhile
        return lease

    monkeypatch.setattr(leases, "acquire", acquire_then_found_dead)
    assert not agent._take("run-1")
    assert agent.owned == {}
    assert bucket.stat(keys.lease_key("run-1")) is None  # let go at once


def test_an_idle_agent_reads_one_bell_a_tick_and_renews_less_often(
    bucket: ObjectStore, fake_gcp: Any
) -> None:
    """On a bucket an agent with no runs lists nothing each tick (only the queue's bell is
    read); its record, which then fences nothing, is renewed every two thirds of its
    lease, and at the usual third again as soon as it holds a run."""
    agent = Agent(bucket, AgentOptions(lease_ttl=30), agent_id="idle")
    try:
        agent.tick()  # the first: renewal, adoption scan, queue listing
        ttl = agent.opts.lease_ttl
        assert agent._next_renew - agent._renewed_at == pytest.approx(ttl * 2 / 3)
        fake_gcp.router.log.clear()
        for _ in range(5):
            agent.tick()
        methods = [(method, path) for _, method, path in fake_gcp.router.log]
        assert len(methods) == 5, methods  # one bell read a tick, nothing listed
        assert all(method == "GET" and "/o/" in path for method, path in methods), methods

        _queue(bucket, "in-turn")
        assert agent._take("in-turn-0")
        assert agent._next_renew - agent._renewed_at == pytest.approx(ttl / 3)
    finally:
        agent.workers.close()


@pytest.mark.parametrize("kind", sorted(STORE_KINDS))
def test_a_runtime_of_an_older_relaunch_is_heard_at_its_heartbeat_key(
    kind: str, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    """Users install relaunch in their own images: a job's runtime may predate the live
    index and write its heartbeat under ``runs/<id>/``. The agent still hears it."""
    store = STORE_KINDS[kind](tmp_path, request)
    [run_id, *_] = _queue(store, "in-turn")
    agent = Agent(store, AgentOptions(max_jobs=1, lease_ttl=60), agent_id="new")
    repo = RunRepo(store)
    try:
        agent.tick()  # claimed and submitted
        found = repo.find_attempt(run_id, 1)
        assert found is not None and found[0].handle is not None
        for step in (3, 7):
            beat = {"time": 0, "attempt": 1, "step": step, "token": found[0].token}
            store.put(keys.legacy_heartbeat_key(run_id), json.dumps(beat).encode())
            agent.tick()
            assert (
                agent.owned[run_id].watch.hb_generation
                == store.stat(keys.legacy_heartbeat_key(run_id)).generation
            )  # type: ignore[union-attr]
        attempt = repo.find_attempt(run_id, 1)
        assert attempt is not None and attempt[0].state is AttemptState.RUNNING
        assert repo.get_run(run_id).state.value == "RUNNING"
    finally:
        agent.workers.close()


class LosesAnAnswer(LocalStore):
    """The next write of each key in ``lose`` lands, and its answer is lost; writes of
    keys in ``fail`` fail."""

    lose: set[str] = set()
    fail: set[str] = set()

    def put(self, key: str, data: bytes, *, if_generation_match: int | None = None) -> int:
        if key in self.fail:
            raise StoreError(f"writing {key!r} timed out")
        gen = super().put(key, data, if_generation_match=if_generation_match)
        if key in self.lose:
            self.lose.discard(key)
            raise StoreError(f"the answer to a write of {key!r} was lost")
        return gen


def _orphans(store: ObjectStore, *run_ids: str) -> None:
    """``run_ids`` started by an agent that then died."""
    spec = JobSpec(name="t", command=["true"])
    for run_id in run_ids:
        run = RunRecord(run_id=run_id, name="t", queue="default", backend="in-turn", spec=spec)
        queue.enqueue(store, run)
    first = Agent(store, AgentOptions(lease_ttl=60), agent_id="first")
    first.tick()  # claims the runs and submits them
    assert sorted(first.owned) == sorted(run_ids)
    dead = agents.read(store, "first")
    assert dead is not None
    agents.write(store, "first", dict(dead.body, expires_at=0.0), dead.generation)


def test_one_orphan_that_cannot_be_taken_does_not_stop_the_adoption_of_others(
    tmp_path: Any,
) -> None:
    store = LosesAnAnswer(tmp_path / "store")
    _orphans(store, "a-run", "b-run")
    adopter = Agent(store, AgentOptions(lease_ttl=60), agent_id="adopter", log=lambda _: None)
    store.fail = {keys.lease_key("a-run")}
    adopter.tick()  # raised at a-run's lease, before looking at b-run
    assert sorted(adopter.owned) == ["b-run"]
    store.fail = set()
    adopter._next_adopt = 0.0
    adopter.tick()
    assert sorted(adopter.owned) == ["a-run", "b-run"]


def test_an_adopted_lease_whose_answer_was_lost_is_taken_back(tmp_path: Any) -> None:
    """An adopter's lease write lands but its answer is lost: the lease names the adopter,
    alive, so no other agent takes the run; the adopter itself takes it back at its next
    scan (it was orphaned for good while the adopter lived)."""
    store = LosesAnAnswer(tmp_path / "store")
    _orphans(store, "lost-answer")
    adopter = Agent(store, AgentOptions(lease_ttl=60), agent_id="adopter", log=lambda _: None)
    store.lose = {keys.lease_key("lost-answer")}
    adopter.tick()  # the adoption scan's lease write: landed, answer lost
    lease = leases.read_lease(store, "lost-answer")
    assert lease is not None and lease.agent_id == "adopter" and adopter.owned == {}
    adopter._next_adopt = 0.0
    adopter.tick()
    assert sorted(adopter.owned) == ["lost-answer"]
