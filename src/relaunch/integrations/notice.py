"""The preemption notice inside the trainer: SIGTERM, which relaunch sends to every
process of the command when spot capacity is reclaimed, a stop or the watchdog ends
the attempt. The trainer has the job's ``grace_period`` to save and exit."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

_received = threading.Event()
_callbacks: list[Callable[[], None]] = []
_previous: Any = None
_installed = False


def checkpoint_dir() -> Path:
    """Where checkpoints go: ``$RELAUNCH_CHECKPOINT_DIR`` (restored before the command
    starts), or ``./checkpoints`` outside relaunch."""
    return Path(os.environ.get("RELAUNCH_CHECKPOINT_DIR") or "checkpoints")


def _handler(signum: int, frame: FrameType | None) -> None:
    first = not _received.is_set()
    _received.set()
    if first:
        for callback in list(_callbacks):
            callback()
    if callable(_previous) and _previous not in (signal.SIG_IGN, signal.SIG_DFL):
        _previous(signum, frame)


def install() -> None:
    """Catch SIGTERM (once; chains a handler installed before). Main thread only."""
    global _previous, _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    _previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _handler)
    _installed = True


def notice_received() -> bool:
    """Whether the preemption notice came: save a checkpoint and exit now."""
    install()
    return _received.is_set()


def on_notice(callback: Callable[[], None]) -> None:
    """Call ``callback`` (in the signal handler: keep it short) when the notice comes."""
    install()
    _callbacks.append(callback)
