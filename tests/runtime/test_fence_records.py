"""The runtime's fence reads records an agent may find damaged: any such record means
"not this runtime's turn" (it ends its command; the agent sets the run aside), never a
crash of the runtime, which would leave the command running unwatched."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaunch.runs import keys
from relaunch.runtime.fence import Fenced, Slot
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


def _held(tmp_path: Path) -> tuple[LocalStore, Slot]:
    store = LocalStore(tmp_path / "store")
    store.put(keys.run_key("r"), b'{"run_id": "r", "attempt": 1}')
    store.put(keys.attempt_key("r", 1), b'{"run_id": "r", "n": 1, "token": "t"}')
    slot = Slot(store, "r", 1, "t", ttl=30)
    assert slot.acquire(lambda: b'{"attempt": 1, "token": "t"}', lambda: False)
    return store, slot


@pytest.mark.parametrize("damage", [b"", b"\x00garbage", b"[]", b"[" * 100_000])
def test_a_damaged_heartbeat_is_written_over_not_taken_for_another_runtime(
    tmp_path: Path, damage: bytes
) -> None:
    """No runtime writes a heartbeat that is not a JSON object (objects are written
    whole): the runtime killed its command, as if superseded, over a damaged object."""
    store, slot = _held(tmp_path)
    store.put(keys.heartbeat_key("r"), damage)
    slot.write(b'{"attempt": 1, "token": "t", "step": 2}')
    assert store.get(keys.heartbeat_key("r"))[0].endswith(b'"step": 2}')


def test_another_runtimes_heartbeat_fences_this_one(tmp_path: Path) -> None:
    store, slot = _held(tmp_path)
    store.put(keys.heartbeat_key("r"), b'{"attempt": 1, "token": "u", "phase": "running"}')
    with pytest.raises(Fenced):
        slot.write(b'{"attempt": 1, "token": "t", "step": 2}')
