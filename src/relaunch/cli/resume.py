"""`relaunch resume`: queue an ended run again under its id, from its last checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from relaunch.cli.common import open_workspace, workspace_options


@click.command()
@click.argument("run_id")
@click.argument("job", required=False, type=click.Path(path_type=Path))
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="NAME=VALUE",
    help="A template variable (repeatable); without JOB, the run's own job file is re-read.",
)
@click.option("--follow", "-f", is_flag=True, help="Stream progress until the run ends.")
@click.option("--detach", "-d", is_flag=True, help="Return at once (the default).")
@click.option(
    "--from-scratch",
    is_flag=True,
    help="Start again at step 0: run it without a checkpoint, or discard the one it has.",
)
@workspace_options
def resume(
    run_id: str,
    job: Path | None,
    sets: tuple[str, ...],
    follow: bool,
    detach: bool,
    from_scratch: bool,
    project: Path | None,
    store: str | None,
) -> None:
    """Queue RUN_ID again — a run that SUCCEEDED, FAILED or was STOPPED — under the same
    run id: attempt numbers go on, the next attempt restores the last committed checkpoint,
    WANDB_RUN_ID stays the same, and the recovery budget starts afresh.

    With JOB (a job.yaml: the fixed code, a new image, other resources) or --set, the run
    continues with that spec, validated as `relaunch run` validates it; without them the
    recorded spec is reused. --follow exits 0 for SUCCEEDED, 1 for FAILED, 3 for STOPPED."""
    from relaunch.cli.run import _follow, _left_running, _parse_sets

    if follow and detach:
        raise click.UsageError("--follow and --detach exclude each other")
    ws = open_workspace(project, store, start=job.resolve().parent if job else None)
    done = ws.resume(
        run_id,
        job,
        _parse_sets(sets),
        from_scratch=from_scratch,
        on_image=lambda line: click.echo(f"relaunch: {line}", err=True),
    )
    if done.checkpoint is not None:
        start = f"from {done.checkpoint.describe()}"
    else:
        start = "from step 0" + (
            f" ({done.discarded.describe()} discarded)" if done.discarded else ""
        )
    click.echo(
        f"{run_id}: attempt {done.attempt} queued on '{done.queue}', starting {start}", err=True
    )
    if not follow:
        click.echo(run_id)
        click.echo(f"follow it: relaunch status {run_id} · relaunch logs {run_id} -f", err=True)
        return
    from relaunch.api import exit_code_of

    try:
        final = _follow(ws, run_id)
    except KeyboardInterrupt:
        click.echo(_left_running(ws, run_id), err=True)
        sys.exit(130)
    sys.exit(exit_code_of(final))
