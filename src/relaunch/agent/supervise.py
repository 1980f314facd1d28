"""Supervising a live attempt: stop requests, the two-phase watchdog, simulated spot
preemptions, and kills once a grace period is over.

Everything here only *asks* the backend to end an attempt and records why
(``cancel_reason``, ``preemption``); the reconciler concludes the attempt when the
backend reports it gone.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from relaunch.backends.base import (
    AttemptStatus,
    Backend,
    SimulatesPreemption,
    simulates_preemption,
)
from relaunch.errors import RelaunchError
from relaunch.runs import keys
from relaunch.runs.records import AttemptRecord, Heartbeat, PreemptionSim, RunRecord
from relaunch.runs.repo import RunRepo
from relaunch.states import Reason, RunState


@dataclass
class Watch:
    """What an agent remembers about a run between ticks (only timing; the truth is in
    the store). Heartbeat age is measured on the agent's clock, from the moment it saw
    the heartbeat object change, so clocks of other machines do not matter."""

    hb_generation: int = 0
    hb_seen: float = field(default_factory=time.time)
    next_poll: float = 0.0
    last_status: AttemptStatus | None = None


class Supervisor:
    def __init__(self, repo: RunRepo) -> None:
        self.repo = repo

    def enforce(
        self,
        run: RunRecord,
        attempt: AttemptRecord,
        backend: Backend,
        stop: bool,
        watch: Watch,
        heartbeat: Heartbeat | None,
        now: float,
        confirm: Callable[[], None],
    ) -> None:
        """Stop requests, watchdog, simulated preemption, and kills after grace. Every
        action on the backend comes right after ``confirm`` (a renewal of the lease)."""
        assert attempt.handle is not None
        spec = run.spec
        if attempt.cancel_reason is None:
            cancel: tuple[Reason, str] | None = None
            if stop:
                cancel = (Reason.STOPPED, "stop requested")
            elif attempt.running_at is None and now - attempt.submitted_at > spec.startup_timeout:
                cancel = self._startup_timeout(spec.startup_timeout, watch.last_status)
            elif attempt.running_at is not None and now - watch.hb_seen > spec.stall_timeout:
                cancel = (
                    Reason.STALLED,
                    f"no heartbeat for {now - watch.hb_seen:.0f}s "
                    f"(stall_timeout {spec.stall_timeout:g}s)",
                )
            elif heartbeat is not None and (heartbeat.idle or 0) > spec.stall_timeout:
                cancel = (
                    Reason.STALLED,
                    f"the command printed nothing and reported no progress for "
                    f"{heartbeat.idle:.0f}s (stall_timeout {spec.stall_timeout:g}s)",
                )
            if cancel is not None:
                attempt.cancel_reason, attempt.detail = cancel
                attempt.cancel_requested_at = now
                confirm()
                backend.cancel(attempt.handle, spec.grace_period)
                self.repo.add_event(
                    run.run_id,
                    "cancel",
                    f"attempt {attempt.n}: {cancel[1]}; cancelling",
                    attempt=attempt.n,
                )
                if stop:
                    self.repo.update_run(run.run_id, set_state(RunState.STOPPING))
        elif attempt.cancel_requested_at and now > attempt.cancel_requested_at + spec.grace_period:
            confirm()
            self._kill(backend, attempt)
        if simulates_preemption(backend):
            self._simulate_preemption(run, attempt, backend, heartbeat, now, confirm)

    @staticmethod
    def _startup_timeout(timeout: float, status: AttemptStatus | None) -> tuple[Reason, str]:
        """Why an attempt never started: the backend's best guess, else a timeout."""
        waited = f"no heartbeat {timeout:g}s after submission"
        if status is not None and status.pending_reason is not None:
            return status.pending_reason, f"{waited}: {status.detail or 'waiting'}"
        return Reason.STARTUP_TIMEOUT, waited

    def _kill(self, backend: Backend, attempt: AttemptRecord) -> None:
        assert attempt.handle is not None
        if simulates_preemption(backend):
            backend.kill(attempt.handle)
        else:
            backend.cancel(attempt.handle, 0)

    def _simulate_preemption(
        self,
        run: RunRecord,
        attempt: AttemptRecord,
        backend: SimulatesPreemption,
        heartbeat: Heartbeat | None,
        now: float,
        confirm: Callable[[], None],
    ) -> None:
        assert attempt.handle is not None
        if attempt.preemption is not None:
            if now >= attempt.preemption.kill_at:
                confirm()
                backend.kill(attempt.handle)
            return
        if attempt.cancel_reason is not None:
            return
        notice, source = self._preemption_due(run, attempt, heartbeat, now)
        if notice is None:
            return
        attempt.preemption = PreemptionSim(
            requested_at=now, notice=notice, kill_at=now + notice, source=source
        )
        confirm()
        backend.send_preemption_notice(attempt.handle)
        self.repo.add_event(
            run.run_id,
            "preemption-notice",
            f"attempt {attempt.n}: spot preemption notice ({source}); killed in {notice:g}s",
            attempt=attempt.n,
        )

    def _preemption_due(
        self, run: RunRecord, attempt: AttemptRecord, heartbeat: Heartbeat | None, now: float
    ) -> tuple[float | None, str]:
        try:
            data = self.repo.peek(keys.preempt_key(run.run_id))
        except RelaunchError:
            data = None
        if data is not None:
            self.repo.store.delete(keys.preempt_key(run.run_id))
            return _notice(data), "relaunch preempt"
        for i, rule in enumerate(run.spec.local.preempt):
            if rule.attempt != attempt.n or i in attempt.preempt_triggers_fired:
                continue
            step = heartbeat.step if heartbeat else None
            hit = (rule.at_step is not None and step is not None and step >= rule.at_step) or (
                rule.after is not None
                and attempt.running_at is not None
                and now - attempt.running_at >= rule.after
            )
            if hit:
                attempt.preempt_triggers_fired.append(i)
                return rule.notice, f"job.yaml local.preempt[{i}]"
        return None, ""


def set_state(state: RunState) -> Any:
    """A run-record mutation that moves a live run to ``state``."""

    def mutate(r: RunRecord) -> bool:
        if r.state.terminal or r.state is state:
            return False
        r.state = state
        return True

    return mutate


def _notice(request: bytes) -> float:
    """The notice a ``relaunch preempt`` request asks for; 5 s when it cannot be read."""
    try:
        notice = json.loads(request).get("notice", 5.0)
        return max(0.0, float(notice)) if math.isfinite(float(notice)) else 5.0
    except (ValueError, TypeError, AttributeError, RecursionError):
        return 5.0
