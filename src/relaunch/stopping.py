"""Stopping a run (`relaunch stop`, `Workspace.stop`): the request is recorded at once
(``.stop``, then the ``live/`` signal), then the run is waited for — a bounded time — while
an agent applies it. When that time is up and the run has not ended, the outcome says
who holds it and why nothing happened, in one line.

Who applies the stop: the agent that holds the run's lease. A run nobody holds (no agent,
or its agent's lease ran out: it died, froze, or lost the store) is taken by an agent
for just that run in this process — the agent's own adoption, fencing and cancel path
(``Agent(only_runs=…)``, as `relaunch run --follow` uses), never a shortcut around them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from relaunch.runs import agents, keys, leases
from relaunch.states import RunState

if TYPE_CHECKING:
    from relaunch.api import Workspace

#: `relaunch stop` exits with this when the stop is recorded but the run has not ended
#: within its wait (the line printed says why).
NOT_APPLIED_EXIT = 4


@dataclass(frozen=True)
class StopOutcome:
    """The run's state when `stop` returns, and — while it has not ended — why."""

    state: RunState
    #: why the run has not ended yet (None once it has): one line for the user
    pending: str | None = None


def stop_run(ws: Workspace, run_id: str, wait: float) -> StopOutcome:
    """Record the stop, then wait up to ``wait`` seconds for the run to end, applying it
    here whenever no agent holds the run."""
    run = ws.repo.get_run(keys.valid_run_id(run_id))
    ws.repo.request_stop(run_id, by="relaunch stop")
    if run.state.terminal:
        # Written all the same: a resume racing this stop keeps the run ended, or
        # its new life obeys the marker before it starts (runs/resume.py).
        run = ws.repo.get_run(run_id)
        if run.state.terminal:
            return StopOutcome(run.state)
    ws.repo.add_event(run_id, "stop-requested", "stop requested (.stop written)")
    started = time.monotonic()
    deadline = started + wait
    # Three reads a look (record, lease, the lease's agent): a bucket is asked less often.
    interval = 1.0 if ws.store.url.startswith("gs://") else 0.1
    took_over = False
    while True:
        state = ws.repo.get_run(run_id).state
        if state.terminal:
            return StopOutcome(state)
        if time.monotonic() >= deadline:
            break
        if not leases.is_held(ws.store, leases.read_lease(ws.store, run_id)):
            # Nobody holds it (or its agent's lease ran out meanwhile): apply it here.
            took_over = True
            _apply_here(ws, run_id, run.queue, deadline)
            continue
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
    waited = time.monotonic() - started
    return StopOutcome(state, _pending(ws, run_id, run.queue, state, waited, took_over))


def _apply_here(ws: Workspace, run_id: str, queue_name: str, deadline: float) -> None:
    """An agent for this run alone, in this process, until the run ends or ``deadline``;
    it lets the lease go when it returns."""
    from relaunch.agent.loop import Agent, AgentOptions
    from relaunch.runs import queue

    agent = Agent(
        ws.store,
        AgentOptions(
            queues=[queue_name],
            only_runs={run_id},
            max_jobs=1,
            poll=0.1,
            lease_ttl=ws.config.agent.lease_ttl,
        ),
        log=lambda _m: None,
    )
    agent.run(until=lambda: ws.repo.get_run(run_id).state.terminal or time.monotonic() >= deadline)
    queue.remove_items_of(ws.store, queue_name, run_id)


def _pending(
    ws: Workspace, run_id: str, queue_name: str, state: RunState, waited: float, took_over: bool
) -> str:
    """Why the stop, recorded ``waited`` seconds ago, has not ended the run."""
    head = f"stop recorded, but the run is still {state.value} after {waited:.0f}s"
    now = time.time()
    lease = leases.read_lease(ws.store, run_id)
    holder = leases.holder(ws.store, lease, now=now) if lease is not None else None
    if holder is None:
        served = bool(agents.live(ws.store, queue_name))
        looked = " (this command looked after it meanwhile)" if took_over else ""
        return f"{head}: no agent holds the run now{looked}; it stops when an agent takes it" + (
            "" if served else f" — start one (relaunch agent --queue {queue_name})"
        )
    who = f"agent {holder.agent_id}" + (
        f" on {holder.body['host']}" if "host" in holder.body else ""
    )
    ends = f"its lease ends in {max(0.0, holder.expires_at - now):.0f}s"
    renewed = _renewed_at(ws, holder)
    if renewed is not None:
        silent = now - renewed
        lease_time = holder.expires_at - renewed
        # An agent that holds runs renews its record every third of its lease time.
        if silent > lease_time / 3 + 2:
            return (
                f"{head}: {who} that holds the run has not answered for {silent:.0f}s "
                f"(frozen or cut off from the store); it stops when that agent or another "
                f"one takes it ({ends})"
            )
    if state is RunState.STOPPING:
        return (
            f"{head}: {who} is stopping it (its attempt is given its grace period); "
            f"it ends when the attempt has (relaunch events {run_id})"
        )
    return (
        f"{head}: {who} holds the run and has not applied the stop yet; it stops when "
        f"that agent does, or when another one takes the run if it is gone ({ends})"
    )


def _renewed_at(ws: Workspace, holder: agents.AgentRecord) -> float | None:
    """When the agent last renewed its record, by the store's clock (None if unknown)."""
    meta = ws.store.stat(keys.agent_key(holder.agent_id))
    if meta is None or meta.generation != holder.generation or meta.updated_ns < 1e18:
        return None
    return meta.updated_ns / 1e9
