"""`relaunch serial`, `vms`, `cleanup`: the VMs behind GCE runs (the seeds' gcp_ops.sh).

Each says which Google Cloud project it acts on, first, on stderr (stdout stays
clean for --json)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from relaunch.cli.common import age, echo_json, open_workspace, workspace_options

_gcp_project = click.option(
    "--gcp-project", metavar="PROJECT", help="Google Cloud project (default: relaunch.toml)."
)


def _say_project(project: str, what: str) -> None:
    click.echo(f"{what} in Google Cloud project {project}", err=True)


@click.command()
@click.argument("run_id")
@click.option(
    "--lines",
    "-n",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="How many of the console's last lines to print.",
)
@click.option("--attempt", type=click.IntRange(min=1), help="Attempt number (default: latest).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the run ends.")
@workspace_options
def serial(
    run_id: str,
    lines: int,
    attempt: int | None,
    follow: bool,
    project: Path | None,
    store: str | None,
) -> None:
    """Print the serial console of RUN_ID's VM: the start-up script (driver, image pull)
    and the container's output before the runtime ships logs."""
    from relaunch.backends.gce import ops

    ws = open_workspace(project, store)
    run = ws.repo.get_run(run_id)
    text, nxt, vm = ops.serial(ws, run_id, attempt=attempt)
    _say_project(str(run.gcp.get("project")), f"serial console of VM {vm}")
    out = "\n".join(text.splitlines()[-lines:])
    click.echo(out)
    while follow and not ws.repo.get_run(run_id).state.terminal:
        time.sleep(2.0)
        more, nxt, _ = ops.serial(ws, run_id, attempt=attempt, start=nxt)
        if more:
            sys.stdout.write(more)
            sys.stdout.flush()


@click.command()
@click.option("--all", "show_all", is_flag=True, help="Also VMs relaunch did not start.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_gcp_project
@workspace_options
def vms(
    show_all: bool, as_json: bool, gcp_project: str | None, project: Path | None, store: str | None
) -> None:
    """List relaunch's VMs in every zone: run, attempt, status, age, and whether a live
    run still owns each (orphans are what `relaunch cleanup` deletes)."""
    from relaunch.backends.gce import ops
    from relaunch.cli.table import render_table

    ws = open_workspace(project, store)
    gcp = ops.gcp_project(ws, gcp_project)
    _say_project(gcp, "VMs")
    rows = ops.list_vms(ws, gcp, include_foreign=show_all)
    if as_json:
        echo_json({"project": gcp, "vms": [r.as_dict() for r in rows]})
        return
    if not rows:
        click.echo("no relaunch VMs")
        return
    headers = ("VM", "ZONE", "STATUS", "RUN", "ATT", "AGE", "OWNER")
    cells = [
        (r.name, r.zone, r.status, r.run_id or "-", str(r.attempt or "-"), age(r.age), r.owner)
        for r in rows
    ]
    click.echo(render_table(headers, cells, lambda col, v: "red" if v == ops.ORPHAN else None))


@click.command()
@click.option("--yes", is_flag=True, help="Delete without asking.")
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Stop every live run first, then delete every relaunch VM (the seeds' --cleanup-all).",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was deleted as JSON.")
@_gcp_project
@workspace_options
def cleanup(
    yes: bool,
    everything: bool,
    as_json: bool,
    gcp_project: str | None,
    project: Path | None,
    store: str | None,
) -> None:
    """Delete VMs (and cancel Vertex jobs) that no live run owns."""
    from relaunch.backends.gce import ops

    ws = open_workspace(project, store)
    gcp = ops.gcp_project(ws, gcp_project)
    _say_project(gcp, "cleaning up")
    rows = ops.list_vms(ws, gcp)
    live = ws.runs(include_ended=False)
    doomed = [r for r in rows if r.owner == ops.ORPHAN or (everything and r.owner != ops.FOREIGN)]
    jobs = (
        ops.orphan_jobs(ws, gcp)
        if ws.config.gcp.region or any(r.backend == "vertex" for r in ws.runs())
        else []
    )
    if not doomed and not jobs and not (everything and live):
        if as_json:
            echo_json({"project": gcp, "stopped": [], "deleted": [], "cancelled": []})
        else:
            click.echo("nothing to clean up")
        return
    what = [f"VM {r.name} ({r.zone}, run {r.run_id}, {r.owner})" for r in doomed]
    what += [f"Vertex job {name} (run {run_id})" for name, run_id, _ in jobs]
    if everything:
        what = [f"stop run {r.run_id} ({r.state.value})" for r in live] + what
    if not yes:
        click.echo("\n".join(what), err=True)
        if not click.confirm("go ahead?", err=True):
            raise SystemExit(1)
    stopped = ops.stop_live_runs(ws) if everything else []
    for row in doomed:
        ops.delete_vm(ws, gcp, row)
    for name, _, region in jobs:
        ops.cancel_job(ws, name, region)
    if as_json:
        echo_json(
            {
                "project": gcp,
                "stopped": [{"run_id": rid, "state": s.value} for rid, s in stopped],
                "deleted": [r.as_dict() for r in doomed],
                "cancelled": [name for name, _, _ in jobs],
            }
        )
        return
    for rid, state in stopped:
        click.echo(f"stopped run {rid}: {state.value}")
    for row in doomed:
        click.echo(f"deleted VM {row.name} ({row.zone}, run {row.run_id})")
    for name, _, _ in jobs:
        click.echo(f"cancelled Vertex job {name}")
