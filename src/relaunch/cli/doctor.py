"""`relaunch doctor`: check the project, its store and a job before running it."""

from __future__ import annotations

from pathlib import Path

import click

from relaunch.cli.common import echo_json, open_workspace, plain, workspace_options
from relaunch.cli.run import _parse_sets

MARK = {"ok": "[green]✔[/]", "warn": "[yellow]![/]", "fail": "[red]✘[/]"}


@click.command()
@click.argument("job", type=click.Path(path_type=Path), required=False)
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="A template variable.")
@click.option("--json", "as_json", is_flag=True, help="Findings as JSON.")
@workspace_options
def doctor(
    job: Path | None,
    sets: tuple[str, ...],
    as_json: bool,
    project: Path | None,
    store: str | None,
) -> None:
    """Check the store (reachable, create-only writes hold), agents, and JOB's settings:
    the startup and stall windows against heartbeats, flex-start waits and spot notice,
    and a cloud job's project, regions, store and credentials. Exit 1 on a problem."""
    from relaunch import doctor as checks
    from relaunch.cli.common import console

    ws = open_workspace(project, store, start=job.parent if job else None)
    findings = checks.check_store(ws)
    if job is not None:
        findings += checks.check_job(ws, job, _parse_sets(sets) or None)
    else:
        findings += [checks.check_agents(ws, q) for q in ws.config.agent.queues]
    if as_json:
        echo_json([f.__dict__ for f in findings])
    else:
        out = console()
        for f in findings:
            out.print(
                f"{MARK[f.level]} {plain(f.what)}" + (f" — {plain(f.fix)}" if f.fix else ""),
                soft_wrap=True,
            )
    if any(f.level == "fail" for f in findings):
        raise SystemExit(1)
