"""Weights & Biases: every attempt continues the same W&B run, nothing is lost.

relaunch sets ``WANDB_RUN_ID`` (the run id) and ``WANDB_RESUME=allow`` in every attempt;
:func:`init` passes them explicitly, :func:`log` always names the step (so the points a
resumed attempt logs again replace, never duplicate or shift, the earlier ones), and
:func:`finish` — called by the trainer after its notice save, and at exit — closes the
run so W&B uploads what it holds (never from inside the signal handler).
"""

from __future__ import annotations

import atexit
import os
from typing import Any

_run: Any = None


def init(**kwargs: Any) -> Any:
    """``wandb.init`` with the attempt's run id and ``resume="allow"``."""
    global _run
    import wandb

    kwargs.setdefault("id", os.environ.get("WANDB_RUN_ID"))
    kwargs.setdefault("resume", os.environ.get("WANDB_RESUME", "allow"))
    _run = wandb.init(**kwargs)
    atexit.register(finish)
    return _run


def log(metrics: dict[str, Any], *, step: int) -> None:
    if _run is not None:
        _run.log(metrics, step=int(step))


def finish() -> None:
    global _run
    run, _run = _run, None
    if run is not None:
        run.finish()
