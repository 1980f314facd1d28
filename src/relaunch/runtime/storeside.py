"""The runtime's store side: the heartbeat slot and fencing (``fence.py``), the output
log, the attempt's result — every write it makes as the attempt, and what it does when
the store fails (say it once, retry; pause the command while the slot is unconfirmed).

A mixin of :class:`relaunch.runtime.wrapper.Runtime`, which owns the state it uses.
Standard library only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from relaunch.errors import ObjectNotFound, StoreError
from relaunch.runs import keys
from relaunch.runtime.config import RuntimeConfig
from relaunch.runtime.fence import Fenced, Slot
from relaunch.runtime.progress import read_progress
from relaunch.runtime.signals import CommandGroup
from relaunch.store.base import ObjectStore


class StoreSide:
    cfg: RuntimeConfig
    store: ObjectStore
    slot: Slot
    group: CommandGroup
    child: subprocess.Popen[bytes] | None
    leader: bool
    fenced: bool
    paused: bool
    instance: str
    resumed_from: int | None
    last_activity: float
    progress_file: Path
    log_file: Path
    _hb_lock: threading.Lock
    _shipped_size: int
    _store_trouble: str
    _result_lost: bool

    def _say(self, message: str) -> None:
        raise NotImplementedError

    def _is_current_attempt(self) -> bool:
        """Fencing: run only if the records name this attempt and submission, and no stop
        exists (the store unreachable: ask again for a while)."""
        deadline = time.monotonic() + 120
        while True:
            try:
                if self.store.stat(keys.stop_key(self.cfg.run_id)) is not None:
                    return False
                return self.slot.current(starting=True)
            except StoreError as e:
                self._store_down(e)
                if time.monotonic() > deadline:
                    raise
                time.sleep(2.0)

    def _store_down(self, e: StoreError) -> None:
        if str(e) != self._store_trouble:
            self._store_trouble = str(e)
            self._say(f"the store failed ({e}); retrying")

    def _heartbeat_body(self, phase: str) -> bytes:
        progress = read_progress(str(self.progress_file))
        body = {
            "time": time.time(),
            "attempt": self.cfg.attempt,
            "phase": phase,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "step": progress.get("step"),
            "total": progress.get("total"),
            "resumed_from": self.resumed_from,
            "instance": self.instance,
            "token": self.cfg.token,
            # seconds the command has neither printed nor reported progress (runtime clock)
            "idle": round(time.monotonic() - self.last_activity, 1),
        }
        return json.dumps({k: v for k, v in body.items() if v is not None}).encode()

    def heartbeat(self, phase: str = "running") -> None:
        """Write the heartbeat through the slot; a slot taken by another runtime fences
        this one (its command is ended), a store error is said once and tried again."""
        if not self.leader or self.fenced:
            return
        with self._hb_lock:
            try:
                self.slot.write(self._heartbeat_body(phase))
            except Fenced as e:
                self._fence(str(e))
            except StoreError as e:
                self._store_down(e)
            else:
                self._store_trouble = ""

    def check_fence(self) -> None:
        """Whether this runtime's submission is still the attempt's (read each heartbeat)."""
        if not self.leader or self.fenced:
            return
        try:
            current = self.slot.current()
        except StoreError as e:
            self._store_down(e)
            return
        if not current:
            self._fence("another submission of this attempt replaced this one")

    def _fence(self, why: str) -> None:
        """Superseded: end the command at once and write nothing more as this attempt."""
        self.fenced = True
        self._say(f"{why}: ending the command; this runtime writes nothing more")
        self._signal_command(signal.SIGKILL)
        self.slot.release(self._heartbeat_body("fenced"))

    def _guard(self) -> None:
        """Pause the command while the slot is unconfirmed for half its TTL (store
        outage, or this machine was frozen); go on once it is confirmed again."""
        if not self.leader or self.fenced:
            return
        if self.slot.unconfirmed_for() > self.slot.ttl / 2:
            if not self.paused:
                self._signal_command(signal.SIGSTOP)
                self.paused = True
                self._say("the heartbeat could not be confirmed: command paused until it is")
            self.check_fence()
            self.heartbeat("running")
        if self.paused and not self.fenced and self.slot.unconfirmed_for() < self.slot.ttl / 2:
            self._signal_command(signal.SIGCONT)
            self.paused = False
            self._say("heartbeat confirmed: command resumed")

    def _signal_command(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the command and everything it started (its process group)."""
        if self.child is not None:
            self.group.send(sig)  # signals.py: never stops or kills the runtime itself

    def ship_log(self) -> None:
        """Upload the output log when it grew since the last upload."""
        try:
            size = self.log_file.stat().st_size
        except FileNotFoundError:
            return
        if self.leader and not self.fenced and size != self._shipped_size:
            try:
                self.store.upload_file(
                    keys.log_key(self.cfg.run_id, self.cfg.attempt), self.log_file
                )
            except StoreError as e:
                self._store_down(e)
                return
            self._shipped_size = size

    def all_stored(self) -> bool:
        """Whether everything this runtime had to write is in the store: the result, and
        the output log as it is now (a superseded runtime writes nothing, by design)."""
        if self.fenced or not self.leader:
            return True
        try:
            size = self.log_file.stat().st_size
        except FileNotFoundError:
            size = self._shipped_size
        return not self._result_lost and size == self._shipped_size

    def _earlier_failure(self) -> int | None:
        """The platform restarted this container after the command itself failed
        (Vertex restarts a worker that exits non-zero): running it again would fail
        again at a GPU's price. Exit at once with the same status, so the platform gives
        up and the agent decides, by the job's retry policy."""
        try:
            data, _ = self.store.get(keys.result_key(self.cfg.run_id, self.cfg.attempt))
        except ObjectNotFound:
            return None
        earlier = json.loads(data)
        if earlier.get("reason") != "user-error":
            return None  # e.g. preempted: this restart is the recovery
        self._say(
            "the command already failed in this attempt "
            f"({earlier.get('detail') or 'user-error'}); not running it again"
        )
        self.ship_log()
        code = earlier.get("exit_code")
        return int(code) if isinstance(code, int) and code > 0 else 1

    def _keep_earlier_output(self) -> None:
        """A container restarted in place (same attempt) continues the attempt's log
        instead of replacing it."""
        if not self.leader or self.log_file.exists():
            return
        try:
            data, _ = self.store.get(keys.log_key(self.cfg.run_id, self.cfg.attempt))
        except ObjectNotFound:
            return
        self.log_file.write_bytes(data)
        self._shipped_size = len(data)

    def _put_result(self, result: dict[str, Any], patience: float = 300.0) -> None:
        """Write the attempt's result, waiting out a store outage for a while (the agent
        concludes an attempt without a result as lost, and retries it)."""
        if self.fenced:
            return
        data = json.dumps(result).encode()
        deadline = time.monotonic() + patience
        while True:
            try:
                self.store.put(keys.result_key(self.cfg.run_id, self.cfg.attempt), data)
                return
            except StoreError as e:
                self._store_down(e)
                if time.monotonic() > deadline:
                    self._say("the result could not be written; the agent will retry the attempt")
                    self._result_lost = True
                    return
                time.sleep(2.0)
