"""Reading relaunch.toml and job.yaml into validated models, with one-line errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from relaunch.errors import SpecError
from relaunch.spec.common import spec_error
from relaunch.spec.project import ProjectConfig
from relaunch.spec.projectfile import (
    MAX_SPEC_BYTES,
    PROJECT_FILE,
    default_root,
    find_project_file,
    find_repository_top,
    project_file,
    read_project,
    read_spec_file,
    resolve_store_url,
)

if TYPE_CHECKING:
    from relaunch.spec.job import JobSpec

__all__ = [
    "MAX_SPEC_BYTES",
    "PROJECT_FILE",
    "LoadedJob",
    "find_project_file",
    "find_repository_top",
    "load_job",
    "load_project",
    "parse_job",
    "store_url",
    "validate_project",
]

MAX_SPEC_NODES = 100_000  # values after YAML aliases are expanded ("billion laughs")


@dataclass(frozen=True)
class LoadedJob:
    spec: JobSpec
    source: Path  # the job.yaml
    base_dir: Path  # what relative paths in it are relative to


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


def load_project(path: Path | None = None, *, start: Path | None = None) -> ProjectConfig:
    """relaunch.toml at ``path``, or the nearest one above ``start`` (a job file's
    folder) or above the working directory; without one, the defaults rooted at the top
    of the git repository you stand in (else the working directory) — so a command run
    from any folder of a project finds the same store, the way git finds its own."""
    found = project_file(path, start=start)
    if found is None:
        config = ProjectConfig()
        config._root = default_root()
        return config
    return validate_project(found, read_project(found))


def validate_project(path: Path, data: dict[str, Any]) -> ProjectConfig:
    """relaunch.toml's document (read from ``path``) as the validated config."""
    try:
        config = ProjectConfig.model_validate(data)
    except ValidationError as e:
        raise spec_error(str(path), ProjectConfig, e) from None
    config._root = path.parent
    return config


def store_url(config: ProjectConfig, override: str | None = None) -> str:
    """The store URL: --store, then $RELAUNCH_STORE, then relaunch.toml (relative to it)."""
    return resolve_store_url(config.store.url, config.root, override)


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
    except yamlsafe.DuplicateKeyError as e:
        raise SpecError(
            f"{source}: {e.problem}", hint=f"keep one '{e.key}:' (the last one would win)"
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
    spec = parse_job(read_spec_file(path, "job file"), str(path), values)
    return LoadedJob(spec=spec, source=path.resolve(), base_dir=path.resolve().parent)
