"""`relaunch run`: validate, queue, and optionally follow a job."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from relaunch.cli.common import (
    STATE_STYLE,
    console,
    note_text,
    open_workspace,
    plain,
    queue_served,
    unserved_note,
    workspace_options,
)

if TYPE_CHECKING:
    from relaunch.api import RunStatus, Workspace
    from relaunch.runs.records import RunRecord


def _parse_sets(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r}: write --set NAME=VALUE", param_hint="--set")
        out[name.strip()] = value
    return out


@click.command()
@click.argument("job", type=click.Path(path_type=Path))
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="NAME=VALUE",
    help="A template variable of the job (repeatable).",
)
@click.option("--follow", "-f", is_flag=True, help="Stream progress until the run ends.")
@click.option("--detach", "-d", is_flag=True, help="Return at once (the default).")
@click.option("--queue", "queue_name", help="Queue (default: the job's).")
@click.option("--run-id", help="Run id (default: generated from the job's name).")
@workspace_options
def run(
    job: Path,
    sets: tuple[str, ...],
    follow: bool,
    detach: bool,
    queue_name: str | None,
    run_id: str | None,
    project: Path | None,
    store: str | None,
) -> None:
    """Validate JOB (a job.yaml), resolve its templates, and queue it.

    With --follow, show state changes and progress until the run ends (running an agent
    in this process if none serves the queue); the exit code is then 0 for SUCCEEDED,
    1 for FAILED, 3 for STOPPED."""
    if follow and detach:
        raise click.UsageError("--follow and --detach exclude each other")
    ws = open_workspace(project, store, start=job.resolve().parent)
    queued = ws.submit_run(
        job,
        _parse_sets(sets),
        queue_name=queue_name,
        run_id=run_id,
        on_image=lambda line: click.echo(f"relaunch: {line}", err=True),
    )
    rid = queued.run_id
    from relaunch.spec.job import missing_env_secrets

    missing = missing_env_secrets(queued.spec)
    if missing:
        click.echo(
            f"note: secret {', '.join(missing)} is not set here; the agent that runs the job "
            "must have it, or the job cannot start",
            err=True,
        )
    if not follow:
        click.echo(rid)
        click.echo(
            f"queued on {ws.store.url}. follow it: relaunch status {rid} · relaunch logs {rid} -f",
            err=True,
        )
        if not queue_served(ws.store, queued.queue):
            click.echo(f"note: {unserved_note(queued.queue)}", err=True)
        return
    from relaunch.api import exit_code_of

    try:
        final = _follow(ws, rid)
    except KeyboardInterrupt:
        click.echo(_left_running(ws, rid), err=True)
        sys.exit(130)
    sys.exit(exit_code_of(final))


def _left_running(ws: Workspace, rid: str) -> str:
    """What a Ctrl-C during --follow leaves: the run goes on, with or without an agent."""
    from relaunch.agent.loop import live_agents

    run = ws.repo.get_run(rid)
    if run.state.terminal:
        return f"stopped following {rid}: it is {run.state.value}"
    if live_agents(ws.store, run.queue):
        return (
            f"stopped following {rid}: it goes on under a running agent — "
            f"relaunch status {rid} · relaunch stop {rid} ends it"
        )
    return (
        f"stopped following {rid}: its job goes on, but no agent watches it now (nothing "
        f"recovers a preemption) — start one: relaunch agent --queue {run.queue} · "
        f"or end it: relaunch stop {rid}"
    )


def _follow(ws: Workspace, rid: str) -> RunRecord:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    out = console()
    out.print(f"[bold]{rid}[/] queued on {ws.store.url}")
    shown = 0
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
        transient=False,
    ) as progress:
        task = progress.add_task("QUEUED", total=None)

        def on_change(status: RunStatus) -> None:
            nonlocal shown
            for event in status.events[shown:]:
                progress.console.print(
                    f"  [dim]{event.kind:>18}[/] {plain(note_text(event.message, rid))}"
                )
            shown = len(status.events)
            run, hb = status.run, status.heartbeat
            style = STATE_STYLE.get(run.state.value, "")
            desc = f"[{style}]{run.state.value:<10}[/] attempt {run.attempt}"
            if hb is not None and hb.attempt == run.attempt and hb.step is not None:
                progress.update(task, description=desc, completed=hb.step, total=hb.total)
            else:
                progress.update(task, description=desc)

        final = ws.wait(rid, on_change=on_change)
        if final.step is not None:  # the last step, as ps shows it: heartbeats are sparse
            style = STATE_STYLE.get(final.state.value, "")
            desc = f"[{style}]{final.state.value:<10}[/] attempt {final.attempt}"
            progress.update(task, description=desc, completed=final.step, total=final.total)
    style = STATE_STYLE.get(final.state.value, "")
    out.print(
        f"[{style}]{final.state.value}[/] after {final.attempt} attempt(s), "
        f"{final.recoveries} recovered"
        + (f" — {plain(note_text(final.note, rid))}" if final.note else "")
    )
    if final.detail and final.state.value == "FAILED":
        if final.detail not in (final.note or ""):  # a note may quote it
            out.print(f"  detail: {plain(final.detail)}")
        out.print(f"  more:   relaunch status {rid} · relaunch logs {rid}")
    return final
