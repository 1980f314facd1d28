"""Reading ahead (agent/prefetch.py) leaves a read that failed to reconciling, where
store errors are handled: it never fails the agent's whole tick."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from relaunch.agent.prefetch import ReadAhead
from relaunch.agent.workers import Workers
from relaunch.errors import StoreError
from relaunch.runs import keys
from relaunch.runs.repo import RunRepo
from relaunch.store import LocalStore


class FailingReads(LocalStore):
    """Reads of ``failing`` keys fail as a store gone away does."""

    failing: set[str] = set()

    def get(self, key: str) -> tuple[bytes, int]:
        if key in self.failing:
            raise StoreError(f"reading {key!r} timed out")
        return super().get(key)


def test_an_attempt_record_whose_read_fails_is_left_to_reconciling(tmp_path: Path) -> None:
    store = FailingReads(tmp_path / "store")
    run_key, attempt_key = keys.run_key("r1"), keys.attempt_key("r1", 1)
    run = json.dumps({"run_id": "r1", "attempt": 1, "backend": "none"}).encode()
    repo = RunRepo(store, cache_ttl=60.0)
    repo.remember(run_key, run, store.put(run_key, run))  # fresh: the attempt is read ahead
    store.put(attempt_key, b"{}")
    store.failing = {attempt_key}
    owned: dict[str, Any] = {"r1": None}
    ReadAhead(repo, Workers(parallel=False)).tick(owned)  # raised TypeError
    assert not repo.fresh(attempt_key)  # nothing cached for it: reconciling reads it
