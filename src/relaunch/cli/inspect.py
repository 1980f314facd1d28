"""`relaunch ps`, `status`, `logs`, `events`: reading runs."""

from __future__ import annotations

import shlex
import sys
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from relaunch.cli.common import (
    STATE_STYLE,
    Seconds,
    age,
    console,
    echo_json,
    local_store_missing,
    note_text,
    open_store_of,
    open_workspace,
    parse_since,
    plain,
    queue_served,
    since,
    unserved_note,
    workspace_options,
)
from relaunch.errors import DamagedRecord, NotFoundError

if TYPE_CHECKING:
    from relaunch.api import RunStatus
    from relaunch.runs.summary import RunSummary

RECENT = 24 * 3600  # `ps` without --all: active runs, and runs ended in the last day


def _progress(step: int | None, total: int | None) -> str:
    if step is None:
        return "-"
    return f"{step}/{total} {100 * step / total:.0f}%" if total else str(step)


def _row(run: RunSummary, hb: dict[str, Any] | None, now: float) -> dict[str, Any]:
    from relaunch.runs.summary import note_is_current

    current = note_is_current(run.state)
    step = hb.get("step") if hb else run.step
    total = (hb.get("total") if hb else None) or run.total
    return {
        "run_id": run.run_id,
        "name": run.name,
        "backend": run.backend,
        "where": run.where,
        "state": run.state,
        "attempts": run.attempt,
        "recoveries": run.recoveries,
        "restarts": run.restarts,
        "step": step,
        "total": total,
        "progress": _progress(step, total),
        "heartbeat_age": round(now - hb["time"], 1) if hb else None,
        "reason": run.reason if current else None,
        "note": (note_text(run.note, run.run_id) or None) if current else None,
        "created_at": run.created_at,
    }


@click.command()
@click.option("--all", "show_all", is_flag=True, help="Include runs that ended over a day ago.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--watch",
    type=Seconds(min=1),
    is_flag=False,
    flag_value=60.0,
    default=None,
    metavar="[S]",
    help="Print again every S seconds (default 60) until Ctrl-C.",
)
@workspace_options
def ps(
    show_all: bool, as_json: bool, watch: float | None, project: Path | None, store: str | None
) -> None:
    """List runs: state, attempts, progress, heartbeat age, and what to do about problems."""
    if watch is not None:
        try:
            while True:
                click.clear()
                click.echo(time.strftime("%H:%M:%S") + f" · every {watch:g}s · Ctrl-C to stop")
                _ps(show_all, as_json, project, store)
                time.sleep(watch)
        except KeyboardInterrupt:
            return
    _ps(show_all, as_json, project, store)


def _ps(show_all: bool, as_json: bool, project: Path | None, store: str | None) -> None:
    from relaunch.cli.table import render_table
    from relaunch.runs.summary import run_view

    where = open_store_of(project, store)
    # Named by --store or $RELAUNCH_STORE, a folder that does not exist is a typo, likely
    # (the project's own store is made by its first run: until then, it has no runs).
    if store is not None and local_store_missing(where):
        raise NotFoundError(
            f"no store at {where.url}",
            hint="check --store or $RELAUNCH_STORE (relaunch run makes the store it queues in)",
        )
    now = time.time()
    rows = []
    served: dict[str, bool] = {}  # queue → a live agent serves it
    runs, heartbeats = run_view(where, recent=None if show_all else RECENT)
    runs = [r for r in runs if show_all or not r.terminal or now - (r.ended_at or 0) <= RECENT]
    for run in runs:
        hb = heartbeats.get(run.run_id)
        row = _row(run, hb, now)
        if run.state == "QUEUED" and not run.note:
            if run.queue not in served:
                served[run.queue] = queue_served(where, run.queue)
            if not served[run.queue]:
                row["note"] = unserved_note(run.queue)
        rows.append(row)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        recent = "" if show_all else " in the last day (--all for older)"
        click.echo(f"no runs{recent} in {where.url}")
        return
    headers = ("RUN", "NAME", "BACKEND", "WHERE", "STATE", "ATT/REC", "PROGRESS", "HB", "NOTE")
    cells = [
        (
            r["run_id"],
            r["name"],
            r["backend"],
            r["where"] or "-",
            r["state"],
            f"{r['attempts']}/{r['recoveries']}",
            r["progress"],
            age(r["heartbeat_age"]),
            f"{r['reason']}: {r['note']}"
            if r["reason"] not in (None, "succeeded")
            else (r["note"] or "" if r["state"] == "QUEUED" else ""),
        )
        for r in rows
    ]
    click.echo(
        render_table(
            headers, cells, lambda col, value: STATE_STYLE.get(value) if col == 4 else None
        )
    )


def _status_progress(st: RunStatus) -> str:
    hb, run = st.heartbeat, st.run
    if hb is not None and hb.attempt == run.attempt and not run.state.terminal:
        return _progress(hb.step, hb.total or run.total)
    return _progress(run.step, run.total)


@click.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON.")
@workspace_options
def status(run_id: str, as_json: bool, project: Path | None, store: str | None) -> None:
    """Show RUN_ID: spec, attempts (where, times, outcome, reason), heartbeat, events."""
    ws = open_workspace(project, store)
    st = ws.status(run_id)
    if as_json:
        echo_json(
            {
                "run": st.run.model_dump(mode="json"),
                "attempts": [a.model_dump(mode="json") for a in st.attempts],
                "heartbeat": st.heartbeat.model_dump(mode="json") if st.heartbeat else None,
                "events": [e.model_dump(mode="json") for e in st.events],
            }
        )
        return
    from rich.table import Table

    from relaunch.runs.summary import note_is_current

    run, out = st.run, console()
    style = STATE_STYLE.get(run.state.value, "")
    out.print(
        f"[bold]{run.run_id}[/] ({plain(run.name)}) [{style}]{run.state.value}[/] on "
        f"{run.backend} · queue {run.queue} · created {since(run.created_at)} ago"
    )
    out.print(f"  command: {plain(shlex.join(run.spec.argv))}")
    if run.state.value == "QUEUED" and not queue_served(ws.store, run.queue):
        out.print(f"  note: {plain(unserved_note(run.queue))}")
    out.print(
        f"  attempts {run.attempt} · recoveries {run.recoveries}/"
        f"{run.spec.retry.max_recoveries} · restarts {run.restarts}/"
        f"{run.spec.retry.max_restarts_on_errors} · progress {_status_progress(st)}"
    )
    if run.resumes:
        out.print(
            f"  resumed {'once' if run.resumes == 1 else f'{run.resumes} times'} "
            f"(last by {plain(run.resumed_by)}, "
            f"{since(run.resumed_at)} ago): recovery budget renewed from attempt "
            f"{run.first_attempt}"
        )
    if run.reason and run.reason.value != "succeeded" and note_is_current(run.state.value):
        out.print(f"  [bold]{run.reason.value}[/]: {plain(note_text(run.note, run.run_id))}")
        if run.detail and run.detail not in (run.note or ""):  # a note may quote it
            out.print(f"  detail: {plain(run.detail)}")
    if st.heartbeat:
        hb = st.heartbeat
        out.print(
            f"  heartbeat: attempt {hb.attempt} step {'-' if hb.step is None else hb.step} "
            f"on {plain(hb.host)} "
            f"({hb.phase}, {since(hb.time)} ago)"
        )
    table = Table(title="attempts", box=None, header_style="bold", title_justify="left")
    for col in ("#", "WHERE", "STATE", "REASON", "STEPS", "EXIT", "STARTED", "ENDED", "DETAIL"):
        table.add_column(col, overflow="fold")
    for a in st.attempts:
        where = str(a.handle.get("where", "")) if a.handle else a.placement.get("region", "-")
        if a.restarts_in_place:
            where += f" ({a.restarts_in_place} restart{'s' * (a.restarts_in_place > 1)})"
        steps = (
            f"{a.first_step if a.first_step is not None else '?'}→{a.last_step}"
            if a.last_step is not None
            else "-"
        )
        table.add_row(
            str(a.n),
            plain(where),
            a.state.value,
            a.reason.value if a.reason else "-",
            steps,
            "-" if a.exit_code is None else str(a.exit_code),
            f"{since(a.submitted_at)} ago",
            f"{since(a.ended_at)} ago" if a.ended_at else "-",
            plain(a.detail or ""),
        )
    out.print(table)
    current = st.attempts[-1] if st.attempts else None
    boot = [e for e in st.events if e.kind in ("boot", "boot-failed") and current
            and e.attempt == current.n]  # fmt: skip
    if boot and current and current.running_at is None:
        out.print(f"  boot: {plain(boot[-1].message)} ({since(boot[-1].time)} ago)")
    failed = [
        a
        for a in st.attempts
        if a.last_lines and a.reason and a.reason.value not in ("succeeded", "preempted", "stopped")
    ]
    if failed:
        out.print(f"[bold]last lines of attempt {failed[-1].n}:[/]")
        for line in failed[-1].last_lines[-20:]:
            out.print("  | " + line, markup=False, highlight=False)
    out.print("[bold]events:[/]")
    for e in st.events[-15:]:
        out.print(
            f"  {time.strftime('%H:%M:%S', time.localtime(e.time))} {e.kind:>18} "
            + note_text(e.message, run.run_id),
            markup=False,
            highlight=False,
        )


@click.command()
@click.argument("run_id")
@click.option("--attempt", type=click.IntRange(min=1), help="Attempt number (default: latest).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the run ends.")
@click.option(
    "--cloud",
    is_flag=True,
    help="The platform's log (Cloud Logging; a local run's raw output on its host), "
    "not the store's.",
)
@workspace_options
def logs(
    run_id: str,
    attempt: int | None,
    follow: bool,
    cloud: bool,
    project: Path | None,
    store: str | None,
) -> None:
    """Print RUN_ID's output (one attempt), or follow it across attempts with -f."""
    if follow and cloud:
        raise click.UsageError(
            "--cloud prints the platform's log as it is now; drop -f, or drop --cloud to "
            "follow what the runtime ships"
        )
    ws = open_workspace(project, store)
    out = sys.stdout.buffer
    say = partial(click.echo, err=True)
    if not follow:
        out.write(ws.logs(run_id, attempt, cloud=cloud, on_unreadable=say))
        out.flush()
        return
    # Following a run tells its whole story: every attempt from the first, in order.
    n, printed, told = attempt or 1, 0, False
    try:
        first = ws.repo.get_run(run_id)
    except (DamagedRecord, NotFoundError) as e:
        # Nothing to follow (an agent sets such a run aside): what the store holds of it.
        if attempt is not None:
            out.write(ws.logs(run_id, attempt, on_unreadable=say))
            return
        from relaunch.runs import salvage

        salvage.log_attempt(ws.repo, run_id, None, e, cloud=False)  # none: raises e
        say(f"{salvage.why_unreadable(run_id, e)}: not following; showing the logs the store has")
        for each in ws.repo.logged_attempts(run_id):
            out.write(f"--- attempt {each} ---\n".encode() + ws.repo.log(run_id, each))
        out.flush()
        return
    while first.attempt < n and not first.state.terminal:
        # Not started yet: say why it waits (no agent?) once, not an empty header.
        if not told:
            waiting = f"{run_id} is {first.state.value}, waiting for attempt {n} to start"
            if not queue_served(ws.store, first.queue):
                waiting += f" — {unserved_note(first.queue)}"
            click.echo(waiting, err=True)
            told = True
        time.sleep(0.5)
        first = ws.repo.get_run(run_id)
    if attempt is None and first.attempt >= 1:
        out.write(b"--- attempt 1 ---\n")
    while True:
        run = ws.repo.get_run(run_id)
        data = ws.repo.log(run_id, n)
        if len(data) > printed:
            out.write(data[printed:])
            out.flush()
            printed = len(data)
        if attempt is None and run.attempt > n:
            n, printed = n + 1, 0
            out.write(f"--- attempt {n} ---\n".encode())
            continue
        if run.state.terminal:
            return
        time.sleep(0.5)


@click.command()
@click.argument("run_id")
@click.option(
    "--since",
    "since_",
    default="30d",
    show_default=True,
    metavar="DURATION",
    help="Only events newer than this (e.g. 24h, 15m).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the events as JSON.")
@click.option(
    "--cloud", is_flag=True, help="Merge in the cloud's own operations on the run's VMs (gce)."
)
@workspace_options
def events(
    run_id: str, since_: str, as_json: bool, cloud: bool, project: Path | None, store: str | None
) -> None:
    """Print RUN_ID's events (claims, attempts, preemptions, recoveries, stops)."""
    ws = open_workspace(project, store)
    since_t = parse_since(since_)
    evs = ws.events(run_id, since=since_t)
    if cloud:
        from relaunch.backends.gce.ops import cloud_events

        gcp, found = cloud_events(ws, run_id)
        click.echo(f"cloud events from Google Cloud project {gcp}", err=True)
        evs = sorted([*evs, *(e for e in found if e.time >= since_t)], key=lambda e: e.time)
    if as_json:
        echo_json([e.model_dump(mode="json") for e in evs])
        return
    for e in evs:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.time))
        click.echo(f"{stamp}  {e.kind:<18} {note_text(e.message, run_id)}")
