"""The fleet benchmark counts a run's check only when the run's owner makes it
(benchmarks/_fleet_owners.py): ownership as the fake cloud sees it from the writes."""

from __future__ import annotations

import json

from benchmarks._fleet_owners import Owners, received


def _record(epoch: str, **extra: object) -> bytes:
    return json.dumps({"id": "x", "epoch": epoch, "expires_at": 1e12, **extra}).encode()


def _lease(agent_id: str, epoch: str) -> bytes:
    return json.dumps({"agent_id": agent_id, "epoch": epoch, "expires_at": 0}).encode()


def test_the_owner_is_the_endpoint_of_the_agent_its_lease_names() -> None:
    owners = Owners("store/")
    owners.wrote("agent0", "store/agents/a.json", _record("e1"))
    owners.wrote("agent1", "store/agents/b.json", _record("e2"))
    owners.wrote("agent1", "store/runs/r1/lease.json", _lease("b", "e2"))
    owners.wrote("agent0", "store/runs/r2/lease.json", _lease("a", "e1"))
    assert owners.owner("r1") == "agent1"
    assert owners.owner("r2") == "agent0"
    assert owners.owner("r3") is None  # never leased


def test_a_released_lease_or_a_departed_agent_owns_nothing() -> None:
    owners = Owners("store/")
    owners.wrote("agent0", "store/agents/a.json", _record("e1"))
    owners.wrote("agent0", "store/runs/r1/lease.json", _lease("a", "e1"))
    owners.wrote("agent0", "store/runs/r2/lease.json", _lease("a", "e1"))
    owners.deleted("store/runs/r1/lease.json")
    assert owners.owner("r1") is None
    assert owners.owner("r2") == "agent0"
    owners.deleted("store/agents/a.json")  # it shut down
    assert owners.owner("r2") is None


def test_an_agent_found_dead_loses_its_runs_and_its_takers_endpoint_is_not_its_own() -> None:
    owners = Owners("store/")
    owners.wrote("agent0", "store/agents/a.json", _record("e1"))
    owners.wrote("agent1", "store/agents/b.json", _record("e2"))
    owners.wrote("agent0", "store/runs/r1/lease.json", _lease("a", "e1"))
    owners.wrote("agent0", "store/runs/r2/lease.json", _lease("a", "e1"))
    # agent1 marks a dead (written through agent1's endpoint) and takes r1.
    owners.wrote("agent1", "store/agents/a.json", _record("e1", dead=True))
    owners.wrote("agent1", "store/runs/r1/lease.json", _lease("b", "e2"))
    assert owners.owner("r1") == "agent1"
    assert owners.owner("r2") is None  # a's lease died with its epoch
    # a comes back in a new epoch through its own endpoint: still not r2's owner.
    owners.wrote("agent0", "store/agents/a.json", _record("e3"))
    assert owners.endpoints["a"] == "agent0"
    assert owners.owner("r2") is None
    owners.wrote("agent0", "store/runs/r2/lease.json", _lease("a", "e3"))
    assert owners.owner("r2") == "agent0"


def test_other_objects_and_damaged_leases() -> None:
    owners = Owners("store/")
    owners.wrote("agent0", "store/agents/a.json", _record("e1"))
    owners.wrote("agent0", "store/runs/r1/lease.json", _lease("a", "e1"))
    owners.wrote("agent0", "store/runs/r1/run.json", b"{}")
    owners.wrote("agent0", "other/runs/r1/lease.json", b"{}")
    assert owners.owner("r1") == "agent0"
    owners.wrote("agent0", "store/runs/r1/lease.json", b"not json")
    assert owners.owner("r1") is None


def test_received_means_the_heartbeat_itself_or_a_listed_generation() -> None:
    hb = "store/live/r1/heartbeat.json"
    assert received("get", hb, 200, {}) == [hb]
    assert received("stat", hb, 200, {"name": hb}) == [hb]
    assert received("get", hb, 404, {}) == []
    assert received("put", hb, 200, {"name": hb}) == []
    listing = {
        "items": [
            {"name": hb, "generation": "17"},
            {"name": "store/live/r2/heartbeat.json"},  # no generation: nothing learnt
        ],
        "prefixes": ["store/live/r3/"],
    }
    assert received("list", "store/live/", 200, listing) == [hb]
    assert received("list", "store/live/", 500, listing) == []
