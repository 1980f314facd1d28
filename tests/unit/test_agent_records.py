"""Agent records fence every lease of their agent (runs/agents.py, runs/leases.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from relaunch.agent.loop import Agent, AgentOptions
from relaunch.agent.start import LeaseLost
from relaunch.errors import PreconditionFailed
from relaunch.runs import agents, keys, leases
from relaunch.store.local import LocalStore


def _record(store: LocalStore, agent_id: str, epoch: str, expires_in: float, gen: int = 0) -> int:
    body = {"id": agent_id, "epoch": epoch, "queues": ["default"], "runs": []}
    body["expires_at"] = time.time() + expires_in
    return agents.write(store, agent_id, body, gen)


def test_a_live_agents_lease_is_not_taken_and_a_dead_ones_is(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    gen = _record(store, "a", "e1", 30)
    held = leases.acquire(store, "run-1", "a", 30, "e1")
    assert held is not None
    assert leases.acquire(store, "run-1", "b", 30, "f1") is None
    assert leases.is_held(store, leases.read_lease(store, "run-1"))

    gen = _record(store, "a", "e1", -1, gen)  # a stopped renewing: its record expired
    taken = leases.acquire(store, "run-1", "b", 30, "f1")
    assert taken is not None and taken.agent_id == "b"
    record = agents.read(store, "a")
    assert record is not None and record.dead and record.body["found_dead_by"] == "b"
    # a's next renewal fails: it learns it lost every run, not just this one
    with pytest.raises(PreconditionFailed):
        _record(store, "a", "e1", 30, gen)


def test_a_lease_of_an_earlier_epoch_is_free(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    _record(store, "a", "e2", 30)  # a came back from the dead in a new epoch
    store.put(keys.lease_key("run-1"), b'{"agent_id": "a", "epoch": "e1", "expires_at": 0}')
    assert not leases.is_held(store, leases.read_lease(store, "run-1"))
    assert leases.acquire(store, "run-1", "b", 30, "f1") is not None


def test_an_agent_found_dead_lets_its_runs_go_and_goes_on_in_a_new_epoch(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    lines: list[str] = []
    agent = Agent(store, AgentOptions(lease_ttl=30), agent_id="frozen", log=lines.append)
    agent._renew(time.time())
    first_epoch = agent.epoch
    assert agent._take("run-1") and agent._take("run-2")
    agent._confirm("run-1")  # within half a lease of its renewal: no write needed

    record = agents.read(store, "frozen")
    assert record is not None
    assert agents.declare_dead(store, record, by="other")  # as an adopter does
    agent._confirmed_until = 0.0  # its last renewal is too old to vouch for it
    with pytest.raises(LeaseLost):
        agent._confirm("run-1")
    assert agent.owned == {} and agent.epoch != first_epoch
    assert any("found this one dead" in line for line in lines)
    again = agents.read(store, "frozen")
    assert again is not None and again.live() and again.epoch == agent.epoch
    # its old leases died with the old epoch: any agent may take them
    assert not leases.is_held(store, leases.read_lease(store, "run-2"))


def test_renewal_is_one_write_per_agent_however_many_runs(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    agent = Agent(store, AgentOptions(lease_ttl=30, max_jobs=500), agent_id="busy")
    agent._renew(time.time())
    for n in range(200):
        assert agent._take(f"run-{n}")
    lease_gens = {n: store.stat(keys.lease_key(f"run-{n}")) for n in range(200)}
    before = store.stat(keys.agent_key("busy"))
    agent._renew(time.time())
    after = store.stat(keys.agent_key("busy"))
    assert before is not None and after is not None and after.generation != before.generation
    assert {n: store.stat(keys.lease_key(f"run-{n}")) for n in range(200)} == lease_gens


def test_records_of_long_dead_agents_are_pruned(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    _record(store, "old", "e", -agents.PRUNE_AFTER - 10)
    _record(store, "recent", "e", -10)
    _record(store, "alive", "e", 30)
    assert agents.prune(store) == 1
    assert {r.agent_id for r in agents.records(store)} == {"recent", "alive"}
    assert [r.agent_id for r in agents.live(store)] == ["alive"]


def test_a_renewal_whose_answer_was_lost_is_not_taken_for_death(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    lines: list[str] = []
    agent = Agent(store, AgentOptions(lease_ttl=30), agent_id="unlucky", log=lines.append)
    agent._renew(time.time())
    assert agent._take("run-1")
    record = agents.read(store, "unlucky")
    assert record is not None
    # The next renewal landed, but its answer never came back: the agent still holds
    # the generation before it.
    agents.write(
        store, "unlucky", dict(record.body, expires_at=time.time() + 30), record.generation
    )
    agent._renew(time.time())
    assert "run-1" in agent.owned and not any("dead" in line for line in lines)
    again = agents.read(store, "unlucky")
    assert again is not None and again.live() and again.generation == agent._record_gen
