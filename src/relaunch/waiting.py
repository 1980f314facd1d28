"""Waiting for a run to end (`relaunch run --follow`, `Workspace.wait`): statuses as they
change, with an agent for just that run in this process while no live agent serves its
queue."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relaunch.api import RunStatus, Workspace
    from relaunch.runs.records import RunRecord


def wait_for_run(
    ws: Workspace,
    run_id: str,
    *,
    on_change: Callable[[RunStatus], None] | None = None,
    interval: float | None = None,
    timeout: float | None = None,
) -> RunRecord:
    """Wait for the run to end, running an agent for it in this process while no live
    agent serves its queue. ``on_change`` sees every new status, read every
    ``interval`` seconds (default 0.2 s on a local store, 2 s on a bucket)."""
    if interval is None:
        interval = 2.0 if ws.store.url.startswith("gs://") else 0.2
    from relaunch.agent.loop import Agent, AgentOptions, live_agents

    run = ws.repo.get_run(run_id)
    agent: Agent | None = None
    thread: threading.Thread | None = None
    if not live_agents(ws.store, run.queue):
        opts = ws.config.agent
        agent = Agent(
            ws.store,
            # Only this run: others in the queue wait for a long-running agent
            # rather than being started by a process that exits with this run.
            AgentOptions(
                queues=[run.queue],
                max_jobs=1,
                poll=opts.poll,
                lease_ttl=opts.lease_ttl,
                only_runs={run_id},
            ),
            log=lambda _m: None,
        )
        thread = threading.Thread(target=agent.run, name="relaunch-agent", daemon=True)
        thread.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    seen: tuple[object, ...] = ()
    try:
        while True:
            status = ws.status(run_id)
            key = (
                status.run.state,
                status.run.attempt,
                len(status.events),
                status.heartbeat.step if status.heartbeat else None,
            )
            if key != seen:
                seen = key
                if on_change:
                    on_change(status)
            if status.run.state.terminal:
                return status.run
            if deadline is not None and time.monotonic() > deadline:
                return status.run
            time.sleep(interval)
    finally:
        if agent is not None and thread is not None:
            agent.stopping.set()
            thread.join(timeout=10)
