"""Leases: which agent owns a run. One object per run, ``runs/<id>/lease.json``.

A lease names an agent and the epoch of that agent's record (``runs/agents.py``); it is
held while the record is live — the agent renews its one record, not every lease. Taking
a free lease is a create-only write; taking one whose agent is dead first marks the
agent's record dead by compare-and-swap (so the agent learns it at its next renewal and
lets all its runs go), then swaps the lease over the generation that was read. So
exactly one agent owns a run at any time.

``expires_at`` in a lease is when it was taken plus the lease time: a lease written by
an agent that renews leases one by one is held until then.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from relaunch.errors import ObjectNotFound, PreconditionFailed
from relaunch.runs import agents, keys
from relaunch.store.base import ObjectStore


@dataclass
class Lease:
    run_id: str
    agent_id: str
    expires_at: float
    generation: int
    epoch: str = ""


def read_lease(store: ObjectStore, run_id: str) -> Lease | None:
    try:
        data, gen = store.get(keys.lease_key(run_id))
    except ObjectNotFound:
        return None
    try:
        body = json.loads(data)
        return Lease(
            run_id,
            str(body["agent_id"]),
            float(body["expires_at"]),
            gen,
            str(body.get("epoch", "")),
        )
    except (ValueError, KeyError, TypeError):
        return Lease(run_id, "?", 0.0, gen)  # damaged: as good as expired, taken over by CAS


def holder(
    store: ObjectStore,
    lease: Lease,
    *,
    now: float | None = None,
    known: dict[str, agents.AgentRecord | None] | None = None,
) -> agents.AgentRecord | None:
    """The live agent record that holds ``lease``, or None when the lease is free to take
    (its agent is dead, expired, gone, or in another epoch). ``known`` caches records
    already read during one scan."""
    now = time.time() if now is None else now
    if lease.agent_id == "?":
        return None
    if known is not None and lease.agent_id in known:
        record = known[lease.agent_id]
    else:
        record = agents.read(store, lease.agent_id)
        if known is not None:
            known[lease.agent_id] = record
    if record is None or not record.live(now):
        return None
    if lease.epoch and record.epoch != lease.epoch:
        return None  # the agent came back from the dead since: this lease died with it
    return record


def is_held(store: ObjectStore, lease: Lease | None, now: float | None = None) -> bool:
    """Whether ``lease`` is held by a live agent (or, for a lease renewed one by one,
    has not expired)."""
    if lease is None:
        return False
    now = time.time() if now is None else now
    if not lease.epoch:
        return lease.expires_at > now
    return holder(store, lease, now=now) is not None


def live_lease(store: ObjectStore, run_id: str) -> Lease | None:
    lease = read_lease(store, run_id)
    return lease if is_held(store, lease) else None


def _body(agent_id: str, epoch: str, ttl: float) -> tuple[bytes, float]:
    expires = time.time() + ttl
    body = {"agent_id": agent_id, "epoch": epoch, "expires_at": expires}
    return json.dumps(body).encode(), expires


def acquire(
    store: ObjectStore, run_id: str, agent_id: str, ttl: float, epoch: str = ""
) -> Lease | None:
    """Take the run's lease if it is free or its agent is dead; None if a live agent
    holds it (or another agent took it first)."""
    current = read_lease(store, run_id)
    now = time.time()
    if current is not None and current.agent_id != agent_id:
        if not current.epoch and current.expires_at > now:
            return None  # renewed one by one, and not expired
        if current.epoch:
            record = agents.read(store, current.agent_id)
            if record is not None and record.live(now) and record.epoch == current.epoch:
                return None
            # Expired: mark it dead first, so it lets go of every run it holds (False
            # when it renewed just now: alive after all).
            if (
                record is not None
                and not record.dead
                and record.epoch == current.epoch
                and not agents.declare_dead(store, record, by=agent_id)
            ):
                return None
    data, expires = _body(agent_id, epoch, ttl)
    try:
        gen = store.put(
            keys.lease_key(run_id), data, if_generation_match=current.generation if current else 0
        )
    except PreconditionFailed:
        return None
    return Lease(run_id, agent_id, expires, gen, epoch)


def release(store: ObjectStore, lease: Lease) -> None:
    try:
        store.delete(keys.lease_key(lease.run_id), if_generation_match=lease.generation)
    except PreconditionFailed:
        pass
