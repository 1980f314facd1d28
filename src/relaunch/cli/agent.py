"""`relaunch agent`: the long-running agent."""

from __future__ import annotations

import signal
from pathlib import Path

import click

from relaunch.cli.common import open_workspace, workspace_options


@click.command()
@click.option("--queue", "queues", multiple=True, help="Queue to serve (repeatable).")
@click.option("--max-jobs", type=click.IntRange(min=1), help="Runs owned at once.")
@click.option("--poll", type=click.FloatRange(min=0.05), help="Seconds between ticks.")
@click.option(
    "--lease-ttl",
    type=click.FloatRange(min=2),
    help="Seconds a silent agent is trusted before others adopt its runs.",
)
@workspace_options
def agent(
    queues: tuple[str, ...],
    max_jobs: int | None,
    poll: float | None,
    lease_ttl: float | None,
    project: Path | None,
    store: str | None,
) -> None:
    """Claim queued runs and keep them alive until they end. Several agents may serve one
    store; each run is owned by exactly one. Stop with Ctrl-C: runs keep running and the
    next agent adopts them."""
    from relaunch.agent.loop import Agent, AgentOptions

    ws = open_workspace(project, store)
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
    try:
        runner.run()
    except KeyboardInterrupt:
        runner.stopping.set()
        runner.shutdown()
    click.echo("agent stopped; its runs keep running and will be adopted", err=True)
