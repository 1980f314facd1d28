"""relaunch's own folders ignore themselves, as ``.pytest_cache`` and ``.venv`` do: a
``.gitignore`` holding ``*`` inside, so ``git add -A`` never commits a store or a stat
cache, and ``git status`` stays clean after a plan or a run."""

from __future__ import annotations

import os
from pathlib import Path

IGNORE_FILE = ".gitignore"
_TEXT = b"# Created by relaunch: its own state, never to be committed.\n*\n"


def ignore_self(folder: Path) -> None:
    """Write ``folder/.gitignore`` (``*``) unless the folder has one. Best effort: a folder
    relaunch cannot write to fails elsewhere, with a better message."""
    path = folder / IGNORE_FILE
    if path.exists() or not folder.is_dir():
        return
    tmp = folder / f".gitignore.{os.getpid()}.tmp"
    try:
        tmp.write_bytes(_TEXT)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
