"""Reading relaunch.toml and job.yaml into validated models, with one-line errors."""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from relaunch.errors import NotFoundError, SpecError
from relaunch.spec.common import spec_error
from relaunch.spec.project import ProjectConfig

if TYPE_CHECKING:
    from relaunch.spec.job import JobSpec

PROJECT_FILE = "relaunch.toml"
MAX_SPEC_BYTES = 1 << 20  # a job file or relaunch.toml is a few KiB; /dev/zero is not
MAX_SPEC_NODES = 100_000  # values after YAML aliases are expanded ("billion laughs")


@dataclass(frozen=True)
class LoadedJob:
    spec: JobSpec
    source: Path  # the job.yaml
    base_dir: Path  # what relative paths in it are relative to


def _read(path: Path, what: str) -> str:
    """The text of a spec file: a regular file of at most MAX_SPEC_BYTES of UTF-8 (a
    device, a FIFO or a huge file would hang the command or eat its memory)."""
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError
            if not stat.S_ISREG(mode):
                raise SpecError(
                    f"{what} {path} is not a regular file (a device, pipe or socket)",
                    hint="name the file itself",
                )
            data = f.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise NotFoundError(f"{what} not found: {path}", hint="check the path") from None
    except IsADirectoryError:
        raise NotFoundError(f"{what} {path} is a folder", hint="name the file itself") from None
    except OSError as e:
        raise SpecError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(
            f"{what} {path} is larger than {MAX_SPEC_BYTES >> 20} MiB",
            hint="a spec file holds settings, not data; check the path",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(
            f"{what} {path} is not UTF-8 text (byte {e.start})", hint="check the path"
        ) from None


def _check_size(doc: Any, source: str) -> None:
    """Refuse a document whose values, with YAML aliases expanded, exceed MAX_SPEC_NODES:
    nested aliases (a "billion laughs") parse in microseconds and expand to billions.
    Shared nodes are sized once (by identity), so this costs the document's own size;
    nesting is already bounded by the loader, so the recursion is shallow."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def too_big(why: str) -> SpecError:
        return SpecError(
            f"{source}: {why}",
            hint="write the values out, or use fewer nested anchors (&) and aliases (*)",
        )

    def size(node: Any) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_:
            raise too_big("a YAML alias refers to the value that holds it")
        open_.add(key)
        items = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        total = 1
        for item in items:
            total += size(item)
            if total > MAX_SPEC_NODES:
                raise too_big(
                    f"the document expands to more than {MAX_SPEC_NODES:,} values "
                    "(nested YAML aliases?)"
                )
        open_.discard(key)
        sizes[key] = total
        return total

    size(doc)


def find_project_file(start: Path) -> Path | None:
    for folder in [start, *start.parents]:
        candidate = folder / PROJECT_FILE
        if candidate.exists():  # a folder or a device there is an error to report
            return candidate
    return None


def find_repository_top(start: Path) -> Path | None:
    """The top of the git repository holding ``start`` (``.git`` is a folder, or a file
    in a worktree or submodule), or None outside one."""
    for folder in [start, *start.parents]:
        if (folder / ".git").exists():
            return folder
    return None


def load_project(path: Path | None = None, *, start: Path | None = None) -> ProjectConfig:
    """relaunch.toml at ``path``, or the nearest one above ``start`` (a job file's
    folder) or above the working directory; without one, the defaults rooted at the top
    of the git repository you stand in (else the working directory) — so a command run
    from any folder of a project finds the same store, the way git finds its own."""
    cwd = Path.cwd().resolve()
    if path is None:
        env = os.environ.get("RELAUNCH_PROJECT")
        path = (
            Path(env)
            if env
            else ((start and find_project_file(start.resolve())) or find_project_file(cwd))
        )
    if path is None:
        config = ProjectConfig()
        config._root = find_repository_top(cwd) or cwd
        return config
    path = path.resolve()
    text = _read(path, PROJECT_FILE)
    if sys.version_info >= (3, 11):  # imported here: most jobs run without a relaunch.toml
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: malformed TOML: {e}", hint="fix the syntax") from None
    try:
        config = ProjectConfig.model_validate(data)
    except ValidationError as e:
        raise spec_error(str(path), ProjectConfig, e) from None
    config._root = path.parent
    return config


def store_url(config: ProjectConfig, override: str | None = None) -> str:
    """The store URL: --store, then $RELAUNCH_STORE, then relaunch.toml (relative to it)."""
    from relaunch.store import check_store_scheme, check_store_url

    url = override if override is not None else os.environ.get("RELAUNCH_STORE") or ""
    url = url if override is not None or url else config.store.url
    check_store_scheme(url)
    if url.startswith("gs://") or url.startswith("file://"):
        return url
    return check_store_url(str((config.root / Path(url).expanduser()).resolve()))


def parse_job(text: str, source: str, values: dict[str, str] | None = None) -> JobSpec:
    """Validate a job document's text. Templates filled from ``values`` and defaults."""
    import yaml

    from relaunch.spec import yamlsafe
    from relaunch.spec.job import JobSpec
    from relaunch.spec.templates import check_macros, fill_templates, mark_templates

    try:
        doc: Any = yamlsafe.load(mark_templates(text))
    except RecursionError:
        raise SpecError(
            f"{source}: the YAML nests too deeply", hint="flatten the document"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(
            f"{source}:{where}: malformed YAML: {problem}",
            hint="fix the syntax (indentation, quotes, colons)",
        ) from None
    _check_size(doc, source)
    if not isinstance(doc, dict):
        raise SpecError(
            f"{source}: a job file is a YAML mapping (name:, command:, …)",
            hint="see examples/quickstart/job.yaml",
        )
    declared = doc.pop("templates", None) or {}
    if not isinstance(declared, dict):
        raise SpecError(f"{source}: templates: must be a mapping of name → declaration")
    doc = fill_templates(doc, declared, values or {}, source)
    check_macros(doc, source)
    try:
        return JobSpec.model_validate(doc)
    except ValidationError as e:
        raise spec_error(source, JobSpec, e) from None


def load_job(path: Path, values: dict[str, str] | None = None) -> LoadedJob:
    path = Path(path)
    spec = parse_job(_read(path, "job file"), str(path), values)
    return LoadedJob(spec=spec, source=path.resolve(), base_dir=path.resolve().parent)
