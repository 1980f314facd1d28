"""`relaunch stop` and `relaunch preempt`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from relaunch.cli.common import Seconds, open_workspace, workspace_options


@click.command()
@click.argument("run_id")
@click.option(
    "--wait",
    type=Seconds(min=0),
    default=60.0,
    show_default=True,
    help="Seconds to wait for an agent to apply the stop and the run to end.",
)
@workspace_options
def stop(run_id: str, wait: float, project: Path | None, store: str | None) -> None:
    """Stop RUN_ID: write .stop, cancel the active attempt. Never recovered after this.

    The stop is recorded at once; the agent that holds the run applies it (a run no
    agent holds, or whose agent's lease ran out, is stopped by this command). Exit 0:
    the run has ended (prints its state). Exit 4: the stop is recorded but the run has
    not ended within --wait — one line says who holds it and why (a frozen agent, say);
    it stops when an agent applies the stop."""
    from relaunch.stopping import NOT_APPLIED_EXIT

    ws = open_workspace(project, store)
    outcome = ws.stop_run(run_id, wait=wait)
    if outcome.pending is not None:
        click.echo(f"{run_id}: {outcome.pending}", err=True)
        sys.exit(NOT_APPLIED_EXIT)
    click.echo(f"{run_id}: {outcome.state.value}")


@click.command()
@click.argument("run_id")
@click.option(
    "--notice",
    type=Seconds(min=0),
    default=5.0,
    show_default=True,
    help="Seconds between the notice (SIGTERM) and the kill.",
)
@workspace_options
def preempt(run_id: str, notice: float, project: Path | None, store: str | None) -> None:
    """Simulate a spot preemption of a local run: notice, grace period, kill."""
    ws = open_workspace(project, store)
    ws.preempt(run_id, notice)
    click.echo(f"{run_id}: preemption requested (notice {notice:g}s)")
