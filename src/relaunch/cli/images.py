"""`relaunch images plan | build | list`: parsing and rendering only."""

from __future__ import annotations

import json
from typing import Any

import click

from relaunch.cli.common import plain
from relaunch.spec.images import BUILDER_NAMES

_STATE_STYLE = {
    "up to date": "green",
    "not in registry": "yellow",
    "inputs changed": "yellow",
    "parent changed": "yellow",
    "unknown": "red",
}


def _config() -> Any:
    from relaunch.spec.loader import load_project

    return load_project()


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


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


@images.command("plan")
@click.argument("names", nargs=-1)
@stack_option
@click.option("--offline", is_flag=True, help="Do not ask the registry; trust local records.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plan(names: tuple[str, ...], stack_dir: str | None, offline: bool, as_json: bool) -> None:
    """Show each image's tag and whether it must be rebuilt, and why."""
    from relaunch.images.build import plan_images
    from relaunch.images.stack import manifest_warnings

    result = plan_images(_config(), list(names) or None, offline=offline, discover_dir=stack_dir)
    for line in manifest_warnings(result.stack):
        click.echo(line, err=True)
    if as_json:
        click.echo(json.dumps([it.to_json() for it in result.items], indent=2))
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
            plain("no images: declare [images.NAME] in relaunch.toml or add Stack/<name>/")
        )
        return
    console.print(table)


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

    stack = load_stack(_config(), discover_dir=stack_dir)
    fps = fingerprints(stack)
    rows = [
        {"image": n, "parent": stack.images[n].parent, "tag": fps[n].tag, "uri": fps[n].uri}
        for n in stack.order
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for col in ("IMAGE", "PARENT", "TAG"):
        table.add_column(col, no_wrap=True)
    table.add_column("URI", overflow="fold")
    for r in rows:
        table.add_row(*(plain(v) for v in (r["image"], r["parent"] or "", r["tag"], r["uri"])))
    _console().print(table)
