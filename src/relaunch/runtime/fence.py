"""The runtime's half of fencing (DESIGN.md §7.1): one trainer per run, even when two
runtimes of an attempt exist (an agent froze while submitting and another one submitted
again; a platform started a container twice).

- The attempt record names the submission in force (``token``, written by the agent
  before it asked the backend); a runtime whose ``RELAUNCH_FENCE`` is not that token is
  superseded and never runs — or stops running — the command.
- The heartbeat object is the runtime's *slot*: written by compare-and-swap over the
  generation this runtime wrote last. Taking it needs it free (no heartbeat, one of an
  earlier attempt, a runtime that ended or was fenced, this very submission restarted)
  or silent for ``ttl``. A runtime that finds its slot taken stops its command at once.
- A runtime that could not confirm its slot for ``ttl / 2`` (the store unreachable, or
  this machine frozen: a suspended VM resumes with the trainer still running) pauses its
  command (SIGSTOP) until it confirms again, so it never runs past the moment another
  runtime could take the slot over. A long store outage pauses the trainer; it never
  orphans it.

Standard library only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from relaunch.errors import ObjectNotFound, PreconditionFailed, StoreError
from relaunch.runs import keys
from relaunch.store.base import ObjectStore

#: phases after which a runtime holds the slot no more
RELEASED = frozenset({"exited", "not-started", "fenced"})


def clock() -> float:
    """Seconds that keep counting while the machine is suspended (boot time on Linux)."""
    return time.clock_gettime(getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC))


def claim_ttl(heartbeat_interval: float) -> float:
    return max(5 * heartbeat_interval, 10.0)


class Fenced(Exception):
    """This runtime is no longer the attempt's current one."""


class Slot:
    def __init__(
        self,
        store: ObjectStore,
        run_id: str,
        attempt: int,
        token: str | None,
        ttl: float,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.attempt = attempt
        self.token = token
        self.ttl = ttl
        self.key = keys.heartbeat_key(run_id)
        self.gen: int | None = None
        self.confirmed_at = clock()
        self._unconfirmed: list[bytes] = []  # writes whose answer did not come back

    # -- is this runtime the one? -------------------------------------------------

    def current(self, *, starting: bool = False) -> bool:
        """Whether the attempt record names this runtime's submission (at start: and the
        run record names this attempt). Raises StoreError when the store cannot say."""
        if starting:
            record = _object(self.store, keys.run_key(self.run_id))
            if record is None:  # none, or damaged: its agent sets the run aside
                return False
            if record.get("attempt", 0) != self.attempt:
                return False
        if not self.token:
            return True  # started by an agent that predates fencing tokens
        attempt = _object(self.store, keys.attempt_key(self.run_id, self.attempt))
        return attempt is not None and attempt.get("token") == self.token

    # -- the slot -----------------------------------------------------------------

    def _free(self, data: bytes) -> bool:
        try:
            hb = json.loads(data)
            attempt = int(hb.get("attempt", 0))
        except (ValueError, TypeError, AttributeError):
            return True  # unreadable: nobody can be holding it
        return (
            attempt < self.attempt
            or (self.token is not None and hb.get("token") == self.token)
            or hb.get("phase") in RELEASED
        )

    def _anothers(self, data: bytes) -> bool:
        """Whether ``data`` is a heartbeat another live runtime wrote."""
        try:
            hb = json.loads(data)
        except (ValueError, RecursionError):
            return False
        return isinstance(hb, dict) and hb.get("phase") not in RELEASED

    def acquire(self, body: Callable[[], bytes], stopping: Callable[[], bool]) -> bool:
        """Take the slot, waiting while another live runtime of this attempt holds it.
        False when this runtime turns out not to be current (or ``stopping()``)."""
        seen: tuple[int, float] | None = None  # (generation, when first seen) of a holder
        while not stopping():
            try:
                if not self.current(starting=True):
                    return False
                try:
                    data, gen = self.store.get(self.key)
                except ObjectNotFound:
                    data, gen = b"", 0
                if gen and not self._free(data):
                    now = clock()
                    if seen is None or seen[0] != gen:
                        seen = (gen, now)
                    if now - seen[1] < self.ttl:
                        time.sleep(min(1.0, self.ttl / 10))
                        continue
                self.gen = self.store.put(self.key, body(), if_generation_match=gen)
                self.confirmed_at = clock()
                return True
            except PreconditionFailed:
                continue
            except StoreError:
                time.sleep(1.0)
        return False

    def write(self, data: bytes) -> None:
        """Write the heartbeat if the slot is still this runtime's. Raises Fenced when
        another runtime took it, StoreError when the store cannot be reached."""
        self._unconfirmed.append(data)
        for _ in range(3):
            try:
                self.gen = self.store.put(self.key, data, if_generation_match=self.gen)
            except PreconditionFailed:
                # Perhaps an earlier write of ours landed and its answer was lost.
                try:
                    current, gen = self.store.get(self.key)
                except ObjectNotFound:
                    raise Fenced("the heartbeat slot was deleted") from None
                if current not in self._unconfirmed and self._anothers(current):
                    raise Fenced("another runtime took this attempt's heartbeat") from None
                # Our own lost answer, a word from no live runtime (a VM's start-up
                # script saying it never started its container), or damage that no
                # runtime wrote (objects are written whole): write over it.
                self.gen = gen
                continue
            self._unconfirmed.clear()
            self.confirmed_at = clock()
            return
        raise StoreError("the heartbeat kept changing under this runtime")

    def release(self, data: bytes) -> None:
        """Hand the slot back (a superseded runtime): only if it is still ours."""
        try:
            self.store.put(self.key, data, if_generation_match=self.gen)
        except (PreconditionFailed, StoreError):
            pass

    def unconfirmed_for(self) -> float:
        return clock() - self.confirmed_at


def _object(store: ObjectStore, key: str) -> dict[str, Any] | None:
    """The JSON object at ``key``; None when there is none or it is damaged (no object,
    not JSON, nested past the parser). A StoreError when the store cannot say."""
    try:
        found = json.loads(store.get(key)[0])
    except ObjectNotFound:
        return None
    except (ValueError, RecursionError):
        return None
    return found if isinstance(found, dict) else None
