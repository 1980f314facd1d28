"""Places the cloud refused recently, shared by every agent through the store.

When an attempt ends with ``quota`` or ``no-capacity`` in a place (a region, for one
machine and accelerator), that place is blocked for a while (quota: an hour; a
stockout: 15 minutes) so the *next* runs start elsewhere instead of each paying for
the same refusal. One object, updated by compare-and-swap, so agents never lose each
other's entries. A blocked place is still used when every offer is blocked.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from relaunch.errors import PreconditionFailed
from relaunch.states import Reason
from relaunch.store.base import ObjectStore, get_json_or_none, put_json

KEY = "placement/blocked.json"
TTL: dict[Reason, float] = {Reason.QUOTA: 3600.0, Reason.NO_CAPACITY: 900.0}


@dataclass(frozen=True)
class Block:
    place: str
    reason: str
    until: float
    detail: str = ""


def blocked(store: ObjectStore, now: float | None = None) -> dict[str, Block]:
    """The places blocked now."""
    now = time.time() if now is None else now
    data, _ = get_json_or_none(store, KEY)
    return {
        place: Block(place, str(e.get("reason", "")), float(e["until"]), str(e.get("detail", "")))
        for place, e in (data or {}).items()
        if float(e.get("until", 0)) > now
    }


def block(store: ObjectStore, place: str, reason: Reason, detail: str = "") -> Block | None:
    """Block ``place`` after ``reason`` (if that reason blocks at all)."""
    ttl = TTL.get(reason)
    if ttl is None or not place:
        return None
    entry = Block(place, reason.value, time.time() + ttl, detail[:300])
    for _ in range(8):
        data, gen = get_json_or_none(store, KEY)
        now = time.time()
        live: dict[str, Any] = {p: e for p, e in (data or {}).items() if e.get("until", 0) > now}
        live[place] = {"reason": entry.reason, "until": entry.until, "detail": entry.detail}
        try:
            put_json(store, KEY, live, if_generation_match=gen)
            return entry
        except PreconditionFailed:
            continue  # another agent wrote first: merge with theirs
    return None


def choose(
    offers: Sequence[dict[str, Any]], start: int, keys: Sequence[str], blocks: dict[str, Block]
) -> tuple[dict[str, Any], list[Block]]:
    """The first offer from ``start`` (wrapping) whose place is not blocked, and the
    blocks passed over; the offer at ``start`` when every one is blocked."""
    n = len(offers)
    skipped: list[Block] = []
    for i in range(n):
        j = (start + i) % n
        hit = blocks.get(keys[j])
        if hit is None:
            return offers[j], skipped
        skipped.append(hit)
    return offers[start % n], []
