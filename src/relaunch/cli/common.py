"""Options and helpers every command shares. Rich is imported only when rendering."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from rich.console import Console

    from relaunch.api import Workspace
    from relaunch.store import ObjectStore

F = TypeVar("F", bound=Callable[..., Any])


class Seconds(click.FloatRange):
    """A finite number of seconds, at least ``min``: `nan` passes every comparison and
    `inf` every lower bound, so a plain FloatRange lets both through."""

    name = "seconds"

    def __init__(self, min: float = 0.0) -> None:
        super().__init__(min=min)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return rv


def workspace_options(f: F) -> F:
    f = click.option(
        "--store",
        "store",
        metavar="URL",
        envvar="RELAUNCH_STORE",
        help="Store: a folder or gs://bucket/prefix (default: relaunch.toml).",
    )(f)
    f = click.option(
        "--project",
        "project",
        type=click.Path(dir_okay=False, path_type=Path),
        help="relaunch.toml to use (default: nearest above the current folder).",
    )(f)
    return f


def open_workspace(project: Path | None, store: str | None, start: Path | None = None) -> Workspace:
    from relaunch.api import Workspace

    return Workspace.open(project=project, store=store, start=start)


def open_store_of(project: Path | None, store: str | None) -> ObjectStore:
    """The store ``open_workspace`` would open, for a command that only reads the store
    (`ps`): relaunch.toml is validated as it validates it, without building its models
    when a quick check vouches for it (their imports are most of `ps`'s start-up)."""
    from relaunch.spec.projectfile import store_location
    from relaunch.store import open_store

    return open_store(store_location(project, store))


def local_store_missing(store: ObjectStore) -> bool:
    """Whether ``store`` is a folder that does not exist (yet): a store is made by the
    first write to it, and a command that only reads must not make one at a typo."""
    from relaunch.store.local import LocalStore

    return isinstance(store, LocalStore) and not store.root.is_dir()


_RUN_PLACEHOLDER = re.compile(r"(relaunch [a-z]+ )RUN\b")


def note_text(note: str | None, run_id: str) -> str:
    """A run's note with its commands naming the run (notes are written once per reason,
    as ``relaunch status RUN``)."""
    return _RUN_PLACEHOLDER.sub(lambda m: m.group(1) + run_id, note or "")


def queue_served(store: ObjectStore, queue: str) -> bool:
    """Whether a live agent serves ``queue`` (read without importing the agent, and every
    backend with it, so `ps` stays fast)."""
    from relaunch.runs import agents

    return bool(agents.live(store, queue))


def unserved_note(queue: str) -> str:
    """What to say of a run waiting in ``queue`` when no live agent serves it. (Not
    `relaunch run JOB --follow`: that queues a second run.)"""
    return (
        f"no agent serves queue '{queue}': start one (relaunch agent --queue {queue}); "
        "the run starts when it does"
    )


def plain(text: object) -> str:
    """``text`` (a run's name, a note, a cloud's error, a log line) made safe to print
    with Rich markup on: "[rank0]: …" would be taken for a style and vanish, "[/x]"
    would raise."""
    from rich.markup import escape

    return escape(str(text))


def console(stderr: bool = False) -> Console:
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output (CI logs, `| less`) gets wide lines instead of Rich's 80 columns.
    width = None if stream.isatty() else 160
    return Console(stderr=stderr, highlight=False, width=width)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def age(seconds_ago: float | None) -> str:
    if seconds_ago is None:
        return "-"
    s = max(0.0, seconds_ago)
    if s < 90:
        return f"{s:.0f}s"
    if s < 5400:
        return f"{s / 60:.0f}m"
    if s < 172800:
        return f"{s / 3600:.0f}h"
    return f"{s / 86400:.0f}d"


def since(t: float | None) -> str:
    return age(time.time() - t) if t else "-"


def parse_since(value: str) -> float:
    from relaunch.spec.durations import parse_duration

    try:
        return time.time() - parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--since") from None


STATE_STYLE = {
    "QUEUED": "cyan",
    "STARTING": "cyan",
    "RUNNING": "green",
    "RECOVERING": "yellow",
    "STOPPING": "yellow",
    "SUCCEEDED": "bold green",
    "FAILED": "bold red",
    "STOPPED": "magenta",
    "DAMAGED": "bold red",
}
