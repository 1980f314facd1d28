"""The trainer's side of the runtime: report progress and finished checkpoints.

    from relaunch.runtime import report
    report(step=i, total=n)                    # cheap; call every step
    report(step=i, total=n, checkpoint=True)   # after a checkpoint is fully written

This writes a small JSON file (``$RELAUNCH_PROGRESS_FILE``) that the runtime reads for
heartbeats; it never touches the store, so it costs nothing in the training loop.
Trainers in other languages can write the same file themselves:
``{"step": 120, "total": 400, "checkpoint_step": 100}`` (write a temp file, rename it).
Outside relaunch (no ``$RELAUNCH_PROGRESS_FILE``) it does nothing.
"""

from __future__ import annotations

import atexit
import json
import os
import time

_MIN_INTERVAL = 0.25  # seconds between writes, unless a checkpoint or the end is reported

_state: dict[str, int | float | None] = {"step": None, "total": None, "checkpoint_step": None}
_last_write = 0.0
_dirty = False


def report(step: int, total: int | None = None, *, checkpoint: bool = False) -> None:
    """Record the current step (and total); ``checkpoint=True`` says a checkpoint for this
    step is complete in ``$RELAUNCH_CHECKPOINT_DIR`` and can be committed now."""
    global _last_write, _dirty
    path = os.environ.get("RELAUNCH_PROGRESS_FILE")
    if not path:
        return
    _state["step"] = int(step)
    if total is not None:
        _state["total"] = int(total)
    if checkpoint:
        _state["checkpoint_step"] = int(step)
    now = time.monotonic()
    final = total is not None and step >= total
    if checkpoint or final or now - _last_write >= _MIN_INTERVAL:
        _write(path)
        _last_write = now
    else:
        _dirty = True


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


def read_progress(path: str) -> dict[str, int | None]:
    """The runtime's read of the file (missing or half-written: empty)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return {k: data.get(k) for k in ("step", "total", "checkpoint_step")}
