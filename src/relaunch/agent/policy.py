"""The recovery policy: after an attempt ends with a reason, what happens to the run."""

from __future__ import annotations

from dataclasses import dataclass

from relaunch.runs.records import RunRecord
from relaunch.states import MAX_KILLED_STREAK, RECOVERY_REASONS, Action, Reason, RunState


@dataclass(frozen=True)
class Decision:
    state: RunState  # SUCCEEDED/FAILED/STOPPED (final) or RECOVERING (another attempt)
    action: Action | None = None
    delay: float = 0.0  # seconds before the next attempt
    failover: bool = False  # move to the next offer (zone/region)
    counts_as_recovery: bool = False
    why: str = ""


def decide(run: RunRecord, reason: Reason, *, stop_requested: bool, offers: int = 1) -> Decision:
    """What to do with ``run`` whose latest attempt ended with ``reason``; ``offers`` is
    how many places (regions, zones) the run may fail over across."""
    # A command that exited 0 by itself finished the work, even when a stop came after
    # (a SIGTERM from outside, a stop's cancel among them, is never a success).
    if reason is Reason.SUCCEEDED:
        return Decision(RunState.SUCCEEDED, why="the command exited 0")
    if stop_requested or reason is Reason.STOPPED:
        return Decision(RunState.STOPPED, why="stop requested")
    policy = run.spec.retry
    action = policy.action_for(reason)
    if action is Action.FAIL:
        return Decision(RunState.FAILED, action, why=f"policy: {reason.value} → fail")
    if reason is Reason.KILLED and run.killed_streak + 1 >= MAX_KILLED_STREAK:
        return Decision(
            RunState.FAILED,
            action,
            why=f"the command was SIGKILLed {MAX_KILLED_STREAK} attempts in a row (out of memory?)",
        )
    untried = offers - 1 - run.offer_index  # offers not yet tried after this one
    # Quota does not come back by waiting: move on, never retry the same place.
    if action is Action.FAILOVER and reason is Reason.QUOTA and untried <= 0:
        where = f"every one of the {offers} places listed" if offers > 1 else "that place"
        return Decision(RunState.FAILED, action, why=f"quota exceeded in {where}")
    # Moving to an untried place after the cloud refused this one is a recovery.
    recovery = reason in RECOVERY_REASONS or (
        action is Action.FAILOVER and reason is Reason.QUOTA and untried > 0
    )
    if recovery and run.recoveries >= policy.max_recoveries:
        return Decision(
            RunState.FAILED, action, why=f"max_recoveries ({policy.max_recoveries}) reached"
        )
    if not recovery and run.restarts >= policy.max_restarts_on_errors:
        return Decision(
            RunState.FAILED,
            action,
            why=f"max_restarts_on_errors ({policy.max_restarts_on_errors}) reached",
        )
    delay = 0.0
    if action is Action.BACKOFF:
        streak = run.recoveries + run.restarts
        delay = min(policy.backoff * (2 ** min(streak, 16)), policy.backoff_max)
    return Decision(
        RunState.RECOVERING,
        action,
        delay=delay,
        failover=action is Action.FAILOVER,
        counts_as_recovery=recovery,
        why=f"policy: {reason.value} → {action.value}",
    )
