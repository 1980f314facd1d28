"""Reading relaunch.toml and job.yaml into validated models, with one-line errors."""

from __future__ import annotations

import os
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

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PROJECT_FILE = "relaunch.toml"


@dataclass(frozen=True)
class LoadedJob:
    spec: JobSpec
    source: Path  # the job.yaml
    base_dir: Path  # what relative paths in it are relative to


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise NotFoundError(f"{what} not found: {path}", hint="check the path") from None
    except IsADirectoryError:
        raise NotFoundError(f"{what} {path} is a folder", hint="name the file itself") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read {what} {path}: {e}") from None


def find_project_file(start: Path) -> Path | None:
    for folder in [start, *start.parents]:
        candidate = folder / PROJECT_FILE
        if candidate.is_file():
            return candidate
    return None


def load_project(path: Path | None = None, *, start: Path | None = None) -> ProjectConfig:
    """relaunch.toml at ``path``, or the nearest one above ``start`` (a job file's
    folder) or above the working directory; without one, the defaults rooted at the
    working directory — so every command finds the same store."""
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
        config._root = cwd
        return config
    path = path.resolve()
    text = _read(path, PROJECT_FILE)
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
    url = override or os.environ.get("RELAUNCH_STORE") or config.store.url
    if url.startswith("gs://") or url.startswith("file://"):
        return url
    return str((config.root / url).resolve())


def parse_job(text: str, source: str, values: dict[str, str] | None = None) -> JobSpec:
    """Validate a job document's text. Templates filled from ``values`` and defaults."""
    import yaml

    from relaunch.spec.job import JobSpec
    from relaunch.spec.templates import check_macros, fill_templates, mark_templates

    try:
        doc: Any = yaml.safe_load(mark_templates(text))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(
            f"{source}:{where}: malformed YAML: {problem}",
            hint="fix the syntax (indentation, quotes, colons)",
        ) from None
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
