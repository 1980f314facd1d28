"""`relaunch agent`: the long-running agent."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING

import click

from relaunch import eventlog
from relaunch.cli.common import Seconds, open_workspace, workspace_options
from relaunch.errors import StoreError

if TYPE_CHECKING:
    from relaunch.agent.loop import Agent


@click.command()
@click.option("--queue", "queues", multiple=True, help="Queue to serve (repeatable).")
@click.option("--max-jobs", type=click.IntRange(min=1), help="Runs owned at once.")
@click.option("--poll", type=Seconds(min=0.05), help="Seconds between ticks.")
@click.option(
    "--lease-ttl",
    type=Seconds(min=2),
    help="Seconds a silent agent is trusted before others adopt its runs.",
)
@click.option(
    "--exit-when-idle",
    type=Seconds(min=0),
    metavar="SECONDS",
    help="Exit once no run has been owned for SECONDS (a Cloud Run job, a cron job).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="One line per decision on stderr; json has `severity` for Cloud Logging.",
)
@workspace_options
def agent(
    queues: tuple[str, ...],
    max_jobs: int | None,
    poll: float | None,
    lease_ttl: float | None,
    exit_when_idle: float | None,
    log_format: str,
    project: Path | None,
    store: str | None,
) -> None:
    """Claim queued runs and keep them alive until they end. Several agents may serve one
    store; each run is owned by exactly one. Stop with Ctrl-C: runs keep running and the
    next agent adopts them. With --exit-when-idle the agent can run as an ephemeral job
    (the seeds' launcher on Cloud Run): it exits when there is nothing left to do."""
    from relaunch.agent.loop import Agent, AgentOptions
    from relaunch.store import open_store

    ws = open_workspace(project, store)
    # Reach the store before announcing anything: no credentials, no bucket, no agent.
    ws.store.list("agents/", delimiter="/")
    cfg = ws.config.agent
    options = AgentOptions(
        queues=list(queues) or cfg.queues,
        max_jobs=max_jobs or cfg.max_jobs,
        poll=poll if poll is not None else cfg.poll,
        lease_ttl=lease_ttl or cfg.lease_ttl,
    )
    # A store call (retries included) must end well within the lease it acts under.
    store_ = open_store(ws.store.url, call_timeout=options.lease_ttl / 4)
    runner = Agent(store_, options, log=_agent_line)
    eventlog.configure("json" if log_format == "json" else "text", agent=runner.id)
    try:
        _serve(runner, ws.store.url, exit_when_idle)
    finally:
        eventlog.configure(None)


def _serve(runner: Agent, url: str, exit_when_idle: float | None) -> None:
    signal.signal(signal.SIGTERM, lambda *_: runner.stopping.set())
    opts = runner.opts
    eventlog.emit(
        "agent-started",
        f"agent {runner.id} serving {', '.join(opts.queues)} on {url} "
        f"(max {opts.max_jobs} jobs, tick {runner.poll:g}s)",
    )
    idle = None if exit_when_idle is None else (lambda: runner.idle_for() > exit_when_idle)
    try:
        runner.run(until=idle)
    except KeyboardInterrupt:
        runner.stopping.set()
        runner.shutdown()
    if idle is not None and idle():
        if runner.tick_error:  # idle because it could do nothing, not because all is done
            eventlog.emit("agent-stopped", "agent exiting: its ticks failed")
            first = runner.tick_error.strip().splitlines()[0]
            raise StoreError(
                f"the agent's ticks failed until it exited (last: {first})",
                hint="fix what the error names (a read-only or unreachable store?)",
            )
        eventlog.emit("agent-stopped", f"agent idle for {exit_when_idle:g}s: exiting")
    else:
        eventlog.emit("agent-stopped", "agent stopped; its runs keep running and will be adopted")


def _agent_line(message: str) -> None:
    """The agent's own lines (not events), in the chosen log format."""
    first = message.split("\n", 1)[0]
    if "internal error" in first:
        eventlog.emit("agent-error", message)
    elif first.startswith(("tick failed", "lost the lease")) or ": " in first:
        eventlog.emit("agent-warning", message)
    else:
        eventlog.emit("agent", message)
