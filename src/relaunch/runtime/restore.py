"""Restore before the command starts, and fall back when a checkpoint is bad.

- LATEST cannot be restored (missing files, wrong sizes, garbage): the newest older
  committed checkpoint is restored instead, with a ``checkpoint-fallback`` event; when
  none can be, the attempt fails at once saying so (a user-error, never "transient").
- The command fails at once on a restored checkpoint (a non-zero exit before it
  reported any step past the restored one, committed anything, or got a notice): the
  runtime restores the previous committed checkpoint, makes it LATEST again, says so
  in an event, and runs the command again — until no older checkpoint is left.

Events are written the way the agent writes them (one object per event), so
``relaunch events`` shows them in order with the agent's.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

from relaunch.runs import keys
from relaunch.runtime.checkpoints import CheckpointSync, Restored, Unrestorable
from relaunch.store.base import ObjectStore


def add_event(
    store: ObjectStore, run_id: str, kind: str, message: str, attempt: int, **data: object
) -> None:
    event = {"time": time.time(), "kind": kind, "message": message, "attempt": attempt,
             "data": data}  # fmt: skip
    key = keys.events_prefix(run_id) + f"{time.time_ns():020d}-{os.urandom(3).hex()}.json"
    store.put(key, json.dumps(event).encode(), if_generation_match=0)


def step_label(step: int | None) -> str:
    return f"step {step}" if step is not None else "an unknown step"


class Restorer:
    """Restores checkpoints for one attempt and remembers the ones that failed it."""

    def __init__(
        self,
        sync: CheckpointSync,
        store: ObjectStore,
        run_id: str,
        attempt: int,
        say: Callable[[str], None],
        emit: bool = True,
    ) -> None:
        self.sync, self.store, self.run_id, self.attempt = sync, store, run_id, attempt
        self.say = say
        self.emit = emit  # only the leader replica writes events
        self.bad: set[int] = set()

    def _event(self, kind: str, message: str, **data: object) -> None:
        self.say(message)
        if self.emit:
            add_event(self.store, self.run_id, kind, message, self.attempt, **data)

    def restore(self) -> Restored | None:
        """Restore the newest usable checkpoint (raises ``Unrestorable``)."""
        restored = self.sync.restore(frozenset(self.bad))
        if restored is None:
            return None
        if restored.skipped and not self.bad:
            self._event(
                "checkpoint-fallback",
                f"attempt {self.attempt}: {'; '.join(restored.skipped)} — restored checkpoint "
                f"{restored.seq} ({step_label(restored.step)}) instead",
                seq=restored.seq,
                step=restored.step,
            )
        else:
            self._event(
                "checkpoint-restored",
                f"attempt {self.attempt}: restored checkpoint {restored.seq} "
                f"({step_label(restored.step)})",
                seq=restored.seq,
                step=restored.step,
            )
        return restored

    def failed_at_once(self, exit_code: int, restored: Restored) -> Restored | None:
        """The command failed at once on ``restored``: restore the one before it and
        make it LATEST; None when there is none (the attempt gives up)."""
        self.bad.add(restored.seq)
        try:
            older = self.sync.restore(frozenset(self.bad))
        except Unrestorable:
            older = None
        if older is None:
            self._event(
                "checkpoint-fallback",
                f"attempt {self.attempt}: the command failed at once (exit {exit_code}) on "
                f"checkpoint {restored.seq} ({step_label(restored.step)}) and no older "
                "checkpoint can be restored; giving up",
                seq=restored.seq,
            )
            return None
        self.sync.point_latest_at(older.seq)
        self._event(
            "checkpoint-fallback",
            f"attempt {self.attempt}: the command failed at once (exit {exit_code}) on "
            f"checkpoint {restored.seq} ({step_label(restored.step)}); running it again from "
            f"checkpoint {older.seq} ({step_label(older.step)})",
            seq=older.seq,
            step=older.step,
            bad_seq=restored.seq,
        )
        return older
