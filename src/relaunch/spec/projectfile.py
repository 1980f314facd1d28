"""relaunch.toml found and read without pydantic, and the store it names.

``store_location`` is how a command that only reads the store (`relaunch ps`) learns
which one, without building the project config's models (their imports are most of
its start-up). It takes the config's word only when ``vouch.certainly_valid`` can
tell the models accept the whole document; anything else goes through the full
validation (``loader.validate_project``), which refuses a bad config with its usual
one-line error. So a bad config is refused as before, and a good one costs a TOML parse.

Standard library only (and ``relaunch.store``'s URL checks).
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

from relaunch.errors import NotFoundError, SpecError

PROJECT_FILE = "relaunch.toml"
DEFAULT_STORE = ".relaunch"  # relative to relaunch.toml (or to the project's top)
MAX_SPEC_BYTES = 1 << 20  # a job file or relaunch.toml is a few KiB; /dev/zero is not


def read_spec_file(path: Path, what: str) -> str:
    """The text of a spec file: a regular file of at most MAX_SPEC_BYTES of UTF-8 (a
    device, a FIFO or a huge file would hang the command or eat its memory)."""
    try:
        # O_NONBLOCK: opening a FIFO blocks until a writer comes, before fstat could
        # refuse it; on a regular file the flag changes nothing.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with open(fd, "rb") as f:
            mode = os.fstat(fd).st_mode
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


def project_file(path: Path | None = None, *, start: Path | None = None) -> Path | None:
    """The relaunch.toml in force (resolved): ``path``, ``$RELAUNCH_PROJECT``, or the
    nearest one above ``start`` (a job file's folder) or above the working directory;
    None when there is none."""
    cwd = Path.cwd().resolve()
    if path is None:
        env = os.environ.get("RELAUNCH_PROJECT")
        path = (
            Path(env)
            if env
            else ((start and find_project_file(start.resolve())) or find_project_file(cwd))
        )
    return path.resolve() if path is not None else None


def default_root() -> Path:
    """Where a project without relaunch.toml is rooted: the top of the git repository
    you stand in (else the working directory), the way git finds its own."""
    cwd = Path.cwd().resolve()
    return find_repository_top(cwd) or cwd


def read_project(path: Path) -> dict[str, Any]:
    """relaunch.toml at ``path`` as TOML (not validated)."""
    text = read_spec_file(path, PROJECT_FILE)
    if sys.version_info >= (3, 11):  # imported here: most jobs run without a relaunch.toml
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: malformed TOML: {e}", hint="fix the syntax") from None


def resolve_store_url(configured: str, root: Path, override: str | None = None) -> str:
    """The store URL: --store (``override``), then $RELAUNCH_STORE, then relaunch.toml's
    (``configured``; a folder is relative to ``root``, the folder of relaunch.toml)."""
    from relaunch.store import check_store_scheme, check_store_url

    url = override if override is not None else os.environ.get("RELAUNCH_STORE") or ""
    url = url if override is not None or url else configured
    check_store_scheme(url)
    if url.startswith("gs://") or url.startswith("file://"):
        return url
    return check_store_url(str((root / Path(url).expanduser()).resolve()))


def store_location(
    project: Path | None = None, store: str | None = None, *, start: Path | None = None
) -> str:
    """The URL of the store a command uses, as ``Workspace.open`` finds it, with the
    project config validated as it validates it — through its models only when the
    quick check cannot vouch for the document."""
    from relaunch.spec.vouch import certainly_valid

    path = project_file(project, start=start)
    if path is None:
        return resolve_store_url(DEFAULT_STORE, default_root(), store)
    data = read_project(path)
    if certainly_valid(data):
        configured = data.get("store", {}).get("url", DEFAULT_STORE)
        return resolve_store_url(configured, path.parent, store)
    from relaunch.spec.loader import store_url, validate_project

    return store_url(validate_project(path, data), store)
