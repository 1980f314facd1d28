"""The trainer's side of the runtime: report progress and finished checkpoints.

    from relaunch.runtime import report
    report(step=i, total=n)                    # cheap; call every step
    report(step=i, total=n, checkpoint=True)   # after a checkpoint is fully written
    report(step=i, checkpoint=True, path="checkpoint-500")  # only that file or folder

This writes a small JSON file (``$RELAUNCH_PROGRESS_FILE``) that the runtime reads for
heartbeats; it never touches the store, so it costs nothing in the training loop.

A checkpoint report also hard-links the checkpoint's files (the whole checkpoint
folder, or only ``path`` inside it) into a hidden staging folder beside them, so the
runtime uploads exactly what was reported even when the trainer has already started
writing the next checkpoint. Linking copies no data; where links are impossible the
runtime reads the live files instead.

Trainers in other languages can write the same file themselves:
``{"step": 120, "total": 400, "checkpoint_step": 100}`` (write a temp file, rename it).
Outside relaunch (no ``$RELAUNCH_PROGRESS_FILE``) it does nothing.
"""

from __future__ import annotations

import atexit
import json
import os
import time
from pathlib import Path

_MIN_INTERVAL = 0.25  # seconds between writes, unless a checkpoint or the end is reported
STAGING = ".relaunch-staged"  # same name as runtime.checkpoints.STAGING

_state: dict[str, int | float | str | None] = {
    "step": None,
    "total": None,
    "checkpoint_step": None,
    "checkpoint_path": None,
    "checkpoint_stage": None,
    "checkpoint_id": None,
}
_last_write = 0.0
_dirty = False
_reports = 0


def report(
    step: int, total: int | None = None, *, checkpoint: bool = False, path: str | None = None
) -> None:
    """Record the current step (and total); ``checkpoint=True`` says a checkpoint for this
    step is complete in ``$RELAUNCH_CHECKPOINT_DIR`` (``path``: only that file or folder
    inside it is the checkpoint) and can be committed now."""
    global _last_write, _dirty, _reports
    progress = os.environ.get("RELAUNCH_PROGRESS_FILE")
    if not progress:
        return
    _state["step"] = int(step)
    if total is not None:
        _state["total"] = int(total)
    if checkpoint:
        _reports += 1
        _state["checkpoint_step"] = int(step)
        _state["checkpoint_path"] = path
        _state["checkpoint_id"] = f"{os.getpid()}-{time.time_ns()}-{_reports}"
        _state["checkpoint_stage"] = _stage(path, str(_state["checkpoint_id"]))
    now = time.monotonic()
    final = total is not None and step >= total
    if checkpoint or final or now - _last_write >= _MIN_INTERVAL:
        _write(progress)
        _last_write = now
    else:
        _dirty = True


def _stage(path: str | None, ident: str) -> str | None:
    """Hard-link the reported checkpoint into ``<dir>/.relaunch-staged/<ident>/``;
    return that folder, or None when it cannot be linked."""
    folder = os.environ.get("RELAUNCH_CHECKPOINT_DIR")
    if not folder:
        return None
    root = Path(folder)
    src = root / path if path else root
    stage = root / STAGING / ident
    try:
        if src.is_file():
            rel = src.relative_to(root)
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(src, stage / rel)
            return str(stage)
        for dirpath, dirs, files in os.walk(src):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                if name.startswith("."):
                    continue
                file = Path(dirpath, name)
                target = stage / file.relative_to(root)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(file, target)
    except (OSError, ValueError):
        return None
    return str(stage)


def _write(path: str) -> None:
    global _dirty
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump({**_state, "time": time.time()}, f)
    os.replace(tmp, path)
    _dirty = False


@atexit.register
def _flush() -> None:
    path = os.environ.get("RELAUNCH_PROGRESS_FILE")
    if path and _dirty:
        _write(path)


_FIELDS = ("step", "total", "checkpoint_step")
_TEXT_FIELDS = ("checkpoint_path", "checkpoint_stage", "checkpoint_id")


def read_progress(path: str) -> dict[str, int | None]:
    """The runtime's read of the file (missing or half-written: empty)."""
    data = read_progress_file(path)
    return {k: v for k, v in data.items() if k in _FIELDS}  # type: ignore[misc]


def read_progress_file(path: str) -> dict[str, int | str | None]:
    """Every field the runtime reads, checkpoint path and staging folder included."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, int | str | None] = {}
    for k in _FIELDS:
        v = data.get(k)
        out[k] = v if isinstance(v, int) and not isinstance(v, bool) else None
    for k in _TEXT_FIELDS:
        v = data.get(k)
        out[k] = v if isinstance(v, str) else None
    return out
