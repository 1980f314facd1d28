"""The runtime's fence reads records an agent may find damaged: any such record means
"not this runtime's turn" (it ends its command; the agent sets the run aside), never a
crash of the runtime, which would leave the command running unwatched."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaunch.runs import keys
from relaunch.runtime.fence import Slot
from relaunch.store import LocalStore


@pytest.mark.parametrize(
    "damage", [b"[]", b'"text"', b"{", b"\xff\xfe", b"[" * 100_000, b'{"token": ["t"]}']
)
def test_a_damaged_attempt_record_fences_the_runtime(tmp_path: Path, damage: bytes) -> None:
    store = LocalStore(tmp_path / "store")
    store.put(keys.run_key("r"), b'{"run_id": "r", "attempt": 1}')
    store.put(keys.attempt_key("r", 1), b'{"run_id": "r", "n": 1, "token": "t"}')
    slot = Slot(store, "r", 1, "t", ttl=30)
    assert slot.current(starting=True)
    store.put(keys.attempt_key("r", 1), damage)
    assert not slot.current()  # raised AttributeError for a list


@pytest.mark.parametrize("damage", [b"[]", b"{", b'{"attempt": "x"}', b'{"attempt": []}'])
def test_a_damaged_run_record_keeps_the_runtime_from_starting(
    tmp_path: Path, damage: bytes
) -> None:
    store = LocalStore(tmp_path / "store")
    store.put(keys.run_key("r"), damage)
    store.put(keys.attempt_key("r", 1), b'{"run_id": "r", "n": 1, "token": "t"}')
    assert not Slot(store, "r", 1, "t", ttl=30).current(starting=True)
