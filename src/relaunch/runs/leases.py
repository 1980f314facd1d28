"""Leases: which agent owns a run. One object per run, ``runs/<id>/lease.json``.

Taking a free lease is a create-only write; taking an expired one is a compare-and-swap
over the generation that was read; renewing is a compare-and-swap over the generation
the owner wrote last. So exactly one agent owns a run at any time, and an agent that
lost its lease learns it at its next renewal and lets the run go.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from relaunch.errors import ObjectNotFound, PreconditionFailed
from relaunch.runs import keys
from relaunch.store.base import ObjectStore


@dataclass
class Lease:
    run_id: str
    agent_id: str
    expires_at: float
    generation: int


def read_lease(store: ObjectStore, run_id: str) -> Lease | None:
    try:
        data, gen = store.get(keys.lease_key(run_id))
    except ObjectNotFound:
        return None
    try:
        body = json.loads(data)
        return Lease(run_id, str(body["agent_id"]), float(body["expires_at"]), gen)
    except (ValueError, KeyError, TypeError):
        return Lease(run_id, "?", 0.0, gen)  # damaged: as good as expired, taken over by CAS


def _body(agent_id: str, ttl: float) -> tuple[bytes, float]:
    expires = time.time() + ttl
    return json.dumps({"agent_id": agent_id, "expires_at": expires}).encode(), expires


def acquire(store: ObjectStore, run_id: str, agent_id: str, ttl: float) -> Lease | None:
    """Take the run's lease if it is free or expired; None if another agent holds it."""
    current = read_lease(store, run_id)
    if current is not None and current.agent_id != agent_id and current.expires_at > time.time():
        return None
    data, expires = _body(agent_id, ttl)
    try:
        gen = store.put(
            keys.lease_key(run_id), data, if_generation_match=current.generation if current else 0
        )
    except PreconditionFailed:
        return None
    return Lease(run_id, agent_id, expires, gen)


def renew(store: ObjectStore, lease: Lease, ttl: float) -> Lease | None:
    """Extend ``lease``; None if it was lost (another agent took it over)."""
    data, expires = _body(lease.agent_id, ttl)
    try:
        gen = store.put(keys.lease_key(lease.run_id), data, if_generation_match=lease.generation)
    except PreconditionFailed:
        return None
    return Lease(lease.run_id, lease.agent_id, expires, gen)


def release(store: ObjectStore, lease: Lease) -> None:
    try:
        store.delete(keys.lease_key(lease.run_id), if_generation_match=lease.generation)
    except PreconditionFailed:
        pass
