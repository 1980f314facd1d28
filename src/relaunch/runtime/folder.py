"""Which checkpoint folder relaunch may empty, and what it may delete in it.

A fresh attempt must start from exactly the restored checkpoint, not from files an
earlier attempt left on the same machine, so the folder is emptied before every
restore. It must never empty a folder of the user's. The first attempt of a run
*claims* the folder: it must be missing or empty, and relaunch writes a marker in it
(``.relaunch-owner``, naming the run). From then on every file in it was restored by
relaunch or written by that run, and is the run's to clear. A folder that holds
anything else — a user's data, or another run's checkpoints — is refused before
anything in it is touched.

Standard library only (the runtime's rule); the local backend uses the same check
before a run is queued.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from relaunch.errors import ObjectNotFound, RelaunchError
from relaunch.runs import keys

MARKER = ".relaunch-owner"  # hidden: never part of a committed checkpoint
_SHOWN = 3  # foreign entries named in the error
_ENDED = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


class FolderNotOurs(RelaunchError):
    """The checkpoint folder holds files that neither relaunch nor this run wrote."""


def owner_of(folder: Path) -> str | None:
    """The run that claimed ``folder`` (None: no marker, or one that is not relaunch's)."""
    try:
        data = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    run_id = data.get("run_id") if isinstance(data, dict) else None
    return run_id if isinstance(run_id, str) and run_id else None


def run_is_over(store: Any, run_id: str) -> bool:
    """Whether ``store`` holds run ``run_id`` and says it ended: its checkpoints are in
    the store, and the folder it claimed may be taken by a later run of the same job.
    A run the store does not know (another project's, say) is never over here."""
    try:
        record = json.loads(store.get(keys.run_key(run_id))[0])
    except (ObjectNotFound, ValueError, RecursionError):
        return False
    return isinstance(record, dict) and record.get("state") in _ENDED


def check_folder(
    folder: Path,
    run_id: str,
    cwd: Path | None = None,
    *,
    is_over: Callable[[str], bool] | None = None,
) -> None:
    """Raise :class:`FolderNotOurs` unless run ``run_id`` may use ``folder`` (relative
    to ``cwd``, default the working folder) as its checkpoint folder: missing, empty,
    claimed by this run, or claimed by a run that ``is_over`` (the same job run again)
    — and never a filesystem root, the home folder, the working folder or a folder
    above it."""
    cwd = (cwd or Path.cwd()).resolve()
    path = folder if folder.is_absolute() else cwd / folder
    resolved = path.resolve()
    shown = f"checkpoints.dir {path}"
    if (
        resolved == Path(resolved.anchor)
        or resolved == Path.home().resolve()
        or resolved == cwd
        or resolved in cwd.parents
    ):
        raise FolderNotOurs(
            f"{shown} is not a folder of its own",
            hint="name a folder that holds only this run's checkpoints (e.g. checkpoints)",
        )
    if resolved.exists() and not resolved.is_dir():
        raise FolderNotOurs(f"{shown} is a file", hint="name a folder for checkpoints.dir")
    if not resolved.is_dir():
        return
    owner = owner_of(resolved)
    if owner == run_id or (owner is not None and is_over is not None and is_over(owner)):
        return
    if owner is not None:
        raise FolderNotOurs(
            f"{shown} holds the checkpoint files of run {owner}; nothing was deleted",
            hint="give this run a folder of its own, or delete that folder if you no "
            "longer need them",
        )
    foreign = sorted(entry.name for entry in resolved.iterdir())
    if foreign:
        listed = ", ".join(foreign[:_SHOWN]) + (", …" if len(foreign) > _SHOWN else "")
        raise FolderNotOurs(
            f"{shown} holds files relaunch did not put there ({listed}); nothing was deleted",
            hint="name a missing or empty folder (relaunch empties it before each restore), "
            "or move those files out",
        )


def claim_folder(
    folder: Path, run_id: str, *, is_over: Callable[[str], bool] | None = None
) -> None:
    """Make ``folder`` this run's (creating it), or raise :class:`FolderNotOurs`."""
    check_folder(folder, run_id, is_over=is_over)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / MARKER
    owner = owner_of(folder)
    if owner is not None and owner != run_id:  # over (checked): its marker moves aside,
        try:  # atomically, so of two runs taking the folder at once one wins
            os.rename(marker, folder / f"{MARKER}.{owner}")
        except FileNotFoundError:
            pass  # another run took it first: the create below fails, the check says so
    body = json.dumps({"run_id": run_id, "note": "checkpoint folder of this relaunch run"})
    try:  # create-only: of two runs claiming one empty folder at once, one wins
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        check_folder(folder, run_id, is_over=is_over)
        if owner_of(folder) != run_id:
            raise FolderNotOurs(
                f"checkpoints.dir {folder} was just taken by run {owner_of(folder)}",
                hint="give each run a folder of its own",
            ) from None
        return
    with os.fdopen(fd, "w") as f:
        f.write(body)


def clear_folder(
    folder: Path, run_id: str, *, is_over: Callable[[str], bool] | None = None
) -> None:
    """Empty ``folder`` of everything but its marker, once it is this run's (every file
    in it was then restored by relaunch, written by this run, or left by a run that
    ended, whose checkpoints are in the store)."""
    claim_folder(folder, run_id, is_over=is_over)
    for entry in folder.iterdir():
        if entry.name == MARKER:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
