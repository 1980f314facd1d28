"""Options and helpers every command shares. Rich is imported only when rendering."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from rich.console import Console

    from relaunch.api import Workspace

F = TypeVar("F", bound=Callable[..., Any])


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
    from relaunch.spec.common import parse_duration

    try:
        return time.time() - parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


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
