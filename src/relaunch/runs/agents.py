"""Agent records: one object per agent, ``agents/<id>.json``, the liveness that fences
every lease the agent holds.

An agent renews its own record by compare-and-swap, every third of its lease time;
the leases of its runs are not renewed one by one (one write per agent, not one per
run). A run's lease names the agent and the *epoch* of its record (a random word,
new each time the agent starts or comes back from the dead), and is held while that
record is live: not expired, not marked dead, same epoch.

Taking a run from an agent whose record expired starts by marking the record dead,
by compare-and-swap over the generation that was seen expired. The agent learns it at
its next renewal (the swap fails), lets every run go, and starts a new epoch: its old
leases stay dead. So an agent that froze for longer than its lease never acts on a run
again, exactly as when each lease was renewed on its own — at one write per agent.

Standard library only: ``relaunch ps`` and ``run`` read agent records too.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from relaunch.errors import ObjectNotFound, PreconditionFailed, RelaunchError
from relaunch.runs import keys
from relaunch.store.base import ObjectStore

#: Records of agents dead or expired for this long are deleted by any agent.
PRUNE_AFTER = 3600.0


@dataclass(frozen=True)
class AgentRecord:
    agent_id: str
    body: dict[str, Any]
    generation: int

    @property
    def epoch(self) -> str:
        return str(self.body.get("epoch", ""))

    @property
    def dead(self) -> bool:
        return bool(self.body.get("dead"))

    @property
    def expires_at(self) -> float:
        value = self.body.get("expires_at", 0.0)
        return float(value) if isinstance(value, (int, float)) else 0.0

    def live(self, now: float | None = None) -> bool:
        return not self.dead and self.expires_at > (time.time() if now is None else now)

    @property
    def runs(self) -> list[str]:
        runs = self.body.get("runs", [])
        return [r for r in runs if isinstance(r, str)] if isinstance(runs, list) else []

    @property
    def queues(self) -> list[str]:
        queues = self.body.get("queues", [])
        return [q for q in queues if isinstance(q, str)] if isinstance(queues, list) else []


def read(store: ObjectStore, agent_id: str) -> AgentRecord | None:
    """The agent's record (None when absent); a damaged one reads as dead."""
    try:
        data, gen = store.get(keys.agent_key(agent_id))
    except ObjectNotFound:
        return None
    return _parse(agent_id, data, gen)


def _parse(agent_id: str, data: bytes, gen: int) -> AgentRecord:
    try:
        body = json.loads(data)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"dead": True, "why": "damaged record"}
    return AgentRecord(agent_id, body, gen)


def records(store: ObjectStore) -> list[AgentRecord]:
    """Every agent record (live or not) — one LIST and a GET per agent."""
    out = []
    for meta in store.list("agents/").objects:
        agent_id = meta.key[len("agents/") :].removesuffix(".json")
        try:
            data, gen = store.get(meta.key)
        except (ObjectNotFound, RelaunchError):
            continue
        out.append(_parse(agent_id, data, gen))
    return out


def live(store: ObjectStore, queue: str | None = None) -> list[AgentRecord]:
    """Agents whose record is live (optionally serving ``queue``)."""
    now = time.time()
    return [r for r in records(store) if r.live(now) and (queue is None or queue in r.queues)]


def write(store: ObjectStore, agent_id: str, body: dict[str, Any], generation: int) -> int:
    """Create (``generation`` 0) or renew the agent's record by compare-and-swap;
    PreconditionFailed when another agent marked it dead (or deleted it) meanwhile."""
    data = json.dumps(body, separators=(",", ":")).encode()
    return store.put(keys.agent_key(agent_id), data, if_generation_match=generation)


def declare_dead(store: ObjectStore, record: AgentRecord, by: str) -> bool:
    """Mark an expired agent dead, by compare-and-swap over the generation seen expired.
    False when it renewed meanwhile (it is alive after all)."""
    body = dict(record.body, dead=True, found_dead_by=by, found_dead_at=time.time())
    try:
        store.put(
            keys.agent_key(record.agent_id),
            json.dumps(body, separators=(",", ":")).encode(),
            if_generation_match=record.generation,
        )
    except (PreconditionFailed, ObjectNotFound):
        return False
    return True


def prune(store: ObjectStore, now: float | None = None) -> int:
    """Delete records of agents dead or expired for over PRUNE_AFTER seconds (by
    generation: one that came back meanwhile keeps its record)."""
    now = time.time() if now is None else now
    pruned = 0
    for record in records(store):
        gone_since = float(record.body.get("found_dead_at", record.expires_at) or 0)
        if (record.dead or record.expires_at < now) and gone_since < now - PRUNE_AFTER:
            try:
                store.delete(keys.agent_key(record.agent_id), if_generation_match=record.generation)
                pruned += 1
            except PreconditionFailed:
                pass
    return pruned
