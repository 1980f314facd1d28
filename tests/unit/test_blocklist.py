"""Places refused recently: shared through the store, merged by CAS, expiring."""

from __future__ import annotations

import time
from pathlib import Path

from relaunch.placement import blocklist
from relaunch.states import Reason
from relaunch.store import LocalStore


def test_block_merges_and_expires(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    assert blocklist.block(store, "vertex/a/m", Reason.QUOTA, "quota in a")
    assert blocklist.block(store, "vertex/b/m", Reason.NO_CAPACITY, "stockout in b")
    assert blocklist.block(store, "vertex/c/m", Reason.USER_ERROR) is None  # not a place's fault
    now = time.time()
    assert set(blocklist.blocked(store, now)) == {"vertex/a/m", "vertex/b/m"}
    # a stockout is forgotten sooner than a quota refusal
    assert set(blocklist.blocked(store, now + 1000)) == {"vertex/a/m"}
    assert blocklist.blocked(store, now + 4000) == {}


def test_choose_passes_over_blocked_places_and_wraps() -> None:
    offers = [{"region": r} for r in ("a", "b", "c")]
    keys = ["a", "b", "c"]
    hit = {k: blocklist.Block(k, "quota", time.time() + 60) for k in ("a", "b")}
    offer, skipped = blocklist.choose(offers, 0, keys, hit)
    assert offer == {"region": "c"} and [b.place for b in skipped] == ["a", "b"]
    assert blocklist.choose(offers, 2, keys, hit)[0] == {"region": "c"}
    # everything blocked: the nominal offer, nothing reported as skipped
    everything = {**hit, "c": blocklist.Block("c", "quota", time.time() + 60)}
    assert blocklist.choose(offers, 1, keys, everything) == ({"region": "b"}, [])
