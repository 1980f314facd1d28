"""Fault points for relaunch's own crash-safety tests — not a user feature.

``RELAUNCH_FAULTS`` (set only by the test suite) names what to do at which point, e.g.
``pause@before-submit,exit@after-submit,lose-answers=0.05``:

- ``pause@POINT``: the process stops itself (SIGSTOP) the first time it reaches POINT,
  standing for a frozen VM or a long stall; the test resumes it (SIGCONT) when it likes.
- ``exit@POINT``: the process dies there at once (``os._exit``), like a SIGKILL.
- ``lose-answers=P``: a fraction P of the store's writes succeed but answer with an
  error, as a write whose answer was lost on the network does.

Standard library only; a no-op unless the variable is set.
"""

from __future__ import annotations

import os
import signal

_fired: set[str] = set()


def _spec() -> list[tuple[str, str]]:
    raw = os.environ.get("RELAUNCH_FAULTS", "")
    out = []
    for item in raw.split(","):
        action, sep, where = item.strip().partition("@")
        if sep:
            out.append((action, where))
    return out


def hit(point: str) -> None:
    """Act out the fault configured for ``point``, once per process."""
    if "RELAUNCH_FAULTS" not in os.environ or point in _fired:
        return
    for action, where in _spec():
        if where != point:
            continue
        _fired.add(point)
        if action == "pause":
            os.kill(os.getpid(), signal.SIGSTOP)
        elif action == "exit":
            os._exit(137)


def lost_answer_rate() -> float:
    for item in os.environ.get("RELAUNCH_FAULTS", "").split(","):
        name, sep, value = item.strip().partition("=")
        if sep and name == "lose-answers":
            return float(value)
    return 0.0
