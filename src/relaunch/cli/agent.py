"""`relaunch agent`: the long-running agent."""

from __future__ import annotations

import signal
from pathlib import Path

import click

from relaunch.cli.common import Seconds, open_workspace, workspace_options


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
@workspace_options
def agent(
    queues: tuple[str, ...],
    max_jobs: int | None,
    poll: float | None,
    lease_ttl: float | None,
    exit_when_idle: float | None,
    project: Path | None,
    store: str | None,
) -> None:
    """Claim queued runs and keep them alive until they end. Several agents may serve one
    store; each run is owned by exactly one. Stop with Ctrl-C: runs keep running and the
    next agent adopts them. With --exit-when-idle the agent can run as an ephemeral job
    (the seeds' launcher on Cloud Run): it exits when there is nothing left to do."""
    from relaunch.agent.loop import Agent, AgentOptions

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
    runner = Agent(ws.store, options, log=lambda m: click.echo(f"agent: {m}", err=True))
    signal.signal(signal.SIGTERM, lambda *_: runner.stopping.set())
    click.echo(
        f"agent {runner.id} serving {', '.join(options.queues)} on {ws.store.url} "
        f"(max {options.max_jobs} jobs, tick {runner.poll:g}s)",
        err=True,
    )
    idle = None if exit_when_idle is None else (lambda: runner.idle_for() > exit_when_idle)
    try:
        runner.run(until=idle)
    except KeyboardInterrupt:
        runner.stopping.set()
        runner.shutdown()
    if idle is not None and idle():
        click.echo(f"agent idle for {exit_when_idle:g}s: exiting", err=True)
    else:
        click.echo("agent stopped; its runs keep running and will be adopted", err=True)
