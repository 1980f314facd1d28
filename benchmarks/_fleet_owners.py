"""Who owns each run, as the fleet benchmark's fake cloud sees it (``_fleet_gcs.py``), so
a run's *check* is counted only when the agent that owns the run makes it. Standard
library only: the unit test (tests/unit/test_fleet_owners.py) imports it alone.

Ownership is read from the writes the store serves, as ``runs/leases.py`` defines it:
a run's lease (``runs/<id>/lease.json``) names an agent and an epoch, and is held while
that agent's record (``agents/<id>.json``) is not marked dead and has that epoch. The
endpoint an agent writes its own (live) record through is that agent's: a record marked
dead is written by whichever agent found it so, so it names no endpoint.

A record that expires with no agent marking it dead changes no owner here: nobody has
taken the run, and the agent goes on with it at its next renewal (or is marked dead
when another agent takes the run — a write seen here).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class _Record:
    epoch: str
    dead: bool


def _json(data: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(data)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


class Owners:
    """Leases and agent records as last written; ``owner(run)``: the endpoint of the
    agent that holds the run's lease now, or None."""

    def __init__(self, root: str = "store/") -> None:
        self.root = root
        self.leases: dict[str, tuple[str, str]] = {}  # run id → (agent id, epoch)
        self.records: dict[str, _Record] = {}  # agent id → its record
        self.endpoints: dict[str, str] = {}  # agent id → endpoint it writes through

    def _parse(self, name: str) -> tuple[str, str] | None:
        """``("lease", run id)`` or ``("agent", agent id)`` of an object name, else None."""
        if not name.startswith(self.root):
            return None
        key = name[len(self.root) :]
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "runs" and parts[2] == "lease.json" and parts[1]:
            return "lease", parts[1]
        if len(parts) == 2 and parts[0] == "agents" and parts[1].endswith(".json"):
            agent_id = parts[1].removesuffix(".json")
            return ("agent", agent_id) if agent_id else None
        return None

    def wrote(self, via: str, name: str, data: bytes) -> None:
        """An object was written (created or replaced) through endpoint ``via``."""
        what = self._parse(name)
        if what is None:
            return
        family, ident = what
        body = _json(data)
        if family == "lease":
            if body is None or not isinstance(body.get("agent_id"), str):
                self.leases.pop(ident, None)  # damaged: held by nobody
            else:
                self.leases[ident] = (body["agent_id"], str(body.get("epoch", "")))
            return
        if body is None:
            self.records[ident] = _Record("", dead=True)  # a damaged record reads as dead
            return
        record = _Record(str(body.get("epoch", "")), dead=bool(body.get("dead")))
        self.records[ident] = record
        if not record.dead:
            self.endpoints[ident] = via

    def deleted(self, name: str) -> None:
        what = self._parse(name)
        if what is None:
            return
        family, ident = what
        if family == "lease":
            self.leases.pop(ident, None)
        else:
            self.records.pop(ident, None)

    def owner(self, run_id: str) -> str | None:
        """The endpoint of the agent holding ``run_id``'s lease, or None (no lease, its
        agent dead or gone, or in another epoch)."""
        lease = self.leases.get(run_id)
        if lease is None:
            return None
        agent_id, epoch = lease
        record = self.records.get(agent_id)
        if record is None or record.dead or (epoch and record.epoch != epoch):
            return None
        return self.endpoints.get(agent_id)


def received(op: str, name: str | None, status: int, body: Mapping[str, Any]) -> list[str]:
    """The objects whose current state a client received from one answered request:
    the object read or stat'ed (a 200 or 206), or each item of a listing that carries
    its generation. ``op`` and ``name`` as ``_gcs_ops.request_op`` gives them."""
    if status not in (200, 206):
        return []
    if op in ("get", "stat"):
        return [name] if name is not None else []
    if op == "list":
        items = body.get("items", [])
        return [
            item["name"]
            for item in items
            if isinstance(item, dict) and "name" in item and item.get("generation") is not None
        ]
    return []
