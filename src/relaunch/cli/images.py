"""`relaunch images plan | build | list`: parsing and rendering only."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from relaunch.cli.common import plain
from relaunch.spec.images import BUILDER_NAMES

_STATE_STYLE = {
    "up to date": "green",
    "not in registry": "yellow",
    "not built": "yellow",
    "inputs changed": "yellow",
    "parent changed": "yellow",
    "unknown": "red",
}


def _config() -> Any:
    from relaunch.spec.loader import load_project

    config = load_project()
    _state_dirs.append(config.root / ".relaunch")
    return config


_state_dirs: list[Path] = []  # where this command may leave build records and caches


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


class _working:
    """A spinner on a terminal's stderr for work that may take a while (hashing a large
    context the first time): shown after a second, gone when done; nothing on a pipe."""

    def __init__(self, what: str, after: float = 1.0) -> None:
        self.what, self.after = what, after
        self._timer: Any = None
        self._status: Any = None

    def _show(self) -> None:
        self._status = _console(stderr=True).status(plain(f"{self.what}…"))
        self._status.start()

    def __enter__(self) -> _working:
        if sys.stderr.isatty():
            import threading

            self._timer = threading.Timer(self.after, self._show)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer.join()
        if self._status is not None:
            self._status.stop()


def _changes(changes: list[str], limit: int = 4) -> str:
    shown = ", ".join(changes[:limit])
    return shown + (f" (+{len(changes) - limit} more)" if len(changes) > limit else "")


stack_option = click.option(
    "--stack",
    "stack_dir",
    metavar="DIR",
    default=None,
    help="Discover <name>/Dockerfile images in DIR (the seeds' Stack/ layout).",
)


@click.group("images")
def images() -> None:
    """Plan, build and list the container image stack."""


@images.result_callback()
def _ignore_state(*_: object, **__: object) -> None:
    # The stat cache and build records under .relaunch/ stay out of `git add -A`.
    from relaunch.store.ignore import ignore_self

    for folder in _state_dirs:
        ignore_self(folder)


@images.command("plan")
@click.argument("names", nargs=-1)
@stack_option
@click.option("--offline", is_flag=True, help="Do not ask the registry; trust local records.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plan(names: tuple[str, ...], stack_dir: str | None, offline: bool, as_json: bool) -> None:
    """Show each image's tag and whether it must be rebuilt, and why."""
    from relaunch.images.build import plan_images
    from relaunch.images.stack import manifest_warnings

    config = _config()
    with _working(f"planning the image stack in {config.root}"):
        result = plan_images(config, list(names) or None, offline=offline, discover_dir=stack_dir)
    for line in manifest_warnings(result.stack):
        click.echo(line, err=True)
    if as_json:
        click.echo(json.dumps([it.to_json() for it in result.items], indent=2))
        _fail_if_nothing_known(result.items)
        return
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for col in ("IMAGE", "TAG", "STATE"):
        table.add_column(col, no_wrap=True)
    table.add_column("WHAT CHANGED / NOTE", overflow="fold")
    for it in result.items:
        style = _STATE_STYLE.get(it.state.value, "")
        detail = _changes(it.changes) if it.changes else (it.note or "")
        if it.changes and it.note:
            detail += f" — {it.note}"
        table.add_row(plain(it.name), it.tag, f"[{style}]{it.state.value}[/]", plain(detail))
    console = _console()
    if not result.items:
        console.print(
            plain(
                f"no images in {config.root}: declare [images.NAME] in relaunch.toml or add "
                "Stack/<name>/Dockerfile (or name the folder with --stack)"
            )
        )
        return
    console.print(table)
    _fail_if_nothing_known(result.items)


def _fail_if_nothing_known(items: list[Any]) -> None:
    """A plan whose every state is ``unknown`` (the registry could not be asked) is
    printed, but it is a failure: a script must not read it as "nothing to build"."""
    from relaunch.errors import RelaunchError
    from relaunch.images.plan import State

    if not items or any(it.state is not State.UNKNOWN for it in items):
        return
    why = list(dict.fromkeys(it.note for it in items if it.note))
    more = f" (and {len(why) - 1} other errors: see the plan)" if len(why) > 1 else ""
    first = why[0] if why else "no reason given"
    _ignore_state()  # an error skips the result callback; the stat cache is written
    raise RelaunchError(
        f"the registry could not be asked, so no image's state is known: {first}{more}"
    )


@images.command("build")
@click.argument("names", nargs=-1)
@stack_option
@click.option(
    "--builder",
    type=click.Choice(BUILDER_NAMES),
    default=None,
    help="Where to build (default: [image_stack] builder, auto).",
)
@click.option("--push", is_flag=True, help="Push to the registry (Cloud Build always pushes).")
@click.option("--dry-run", is_flag=True, help="Show what would be built, build nothing.")
@click.option("--require-clean", is_flag=True, help="Refuse inputs not committed to git.")
@click.option("--offline", is_flag=True, help="Do not ask the registry; trust local records.")
def build(
    names: tuple[str, ...],
    stack_dir: str | None,
    builder: str | None,
    push: bool,
    dry_run: bool,
    require_clean: bool,
    offline: bool,
) -> None:
    """Build what the plan says, parent before child (NAMES: those and their ancestors)."""
    from relaunch.images.build import build_images, builder_pushes, plan_images
    from relaunch.images.plan import PlanItem

    config = _config()
    with _working(f"planning the image stack in {config.root}"):
        plan_ = plan_images(config, list(names) or None, offline=offline, discover_dir=stack_dir)
    console = _console(stderr=True)
    pushes = push or builder_pushes(config, builder or config.image_stack.builder)
    todo = plan_.to_build(list(names) or None, push=pushes)
    if not todo:
        console.print("[green]every image is up to date[/]")
        return
    total = len(todo)
    status: dict[str, Any] = {}
    done = {"n": 0}

    def progress(event: str, it: PlanItem, text: str) -> None:
        label = plain(f"[{done['n'] + 1}/{total}] {it.name}:{it.tag}")
        if event == "start":
            if not dry_run:
                status["s"] = console.status(f"{label} building ({text})")
                status["s"].start()
        elif event == "line" and "s" in status:
            status["s"].update(f"{label} {plain(text.strip()[:100])}")
        elif event in ("done", "skip"):
            if "s" in status:
                status.pop("s").stop()
            done["n"] += 1
            verb = "would build" if event == "skip" else "built"
            why = f" ({it.state.value})" if event == "skip" else f" — log: {plain(text)}"
            console.print(f"{label} {verb}{why}")

    from relaunch.images.builders.outcome import BuildFailed

    try:
        build_images(
            config,
            list(names) or None,
            builder=builder,
            push=push,
            dry_run=dry_run,
            require_clean=require_clean,
            offline=offline,
            plan=plan_,
            progress=progress,
        )
    except BuildFailed as e:
        if "s" in status:
            status.pop("s").stop()
        if e.tail:
            click.echo("the failing step's last lines:", err=True)
            for line in e.tail:
                click.echo(f"  {line}", err=True)
        raise
    finally:
        if "s" in status:
            status.pop("s").stop()


@images.command("list")
@stack_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_(stack_dir: str | None, as_json: bool) -> None:
    """The images with their current tags and full URIs (no registry calls)."""
    from relaunch.images.fingerprint import fingerprints
    from relaunch.images.stack import load_stack

    config = _config()
    with _working(f"hashing the image stack in {config.root}"):
        stack = load_stack(config, discover_dir=stack_dir)
        fps = fingerprints(stack)
    rows = [
        {"image": n, "parent": stack.images[n].parent, "tag": fps[n].tag, "uri": fps[n].uri}
        for n in stack.order
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from relaunch.cli.table import render_table

    # Plain aligned lines: a pipe (grep, awk, CI logs) gets whole URIs, never wrapped.
    cells = [(str(r["image"]), str(r["parent"] or "-"), str(r["tag"]), str(r["uri"])) for r in rows]
    click.echo(render_table(("IMAGE", "PARENT", "TAG", "URI"), cells, wrap_last=False))
