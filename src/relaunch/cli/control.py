"""`relaunch stop` and `relaunch preempt`."""

from __future__ import annotations

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
    help="Seconds to wait for the run to end.",
)
@workspace_options
def stop(run_id: str, wait: float, project: Path | None, store: str | None) -> None:
    """Stop RUN_ID: write .stop, cancel the active attempt. Never recovered after this."""
    ws = open_workspace(project, store)
    state = ws.stop(run_id, wait=wait)
    click.echo(f"{run_id}: {state.value}")


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
