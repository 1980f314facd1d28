"""The agent's log: one line per decision, written where every event is recorded.

``RunRepo.add_event`` calls :func:`emit` for each event it stores (claimed, submitted,
running, preempted, recovering, ended…), so an agent says what it decided as it decides
it, with the run id, the attempt and the reason. Nothing is printed until a process
asks for it with :func:`configure` (``relaunch agent`` does): a CLI command that
records an event, or a library user, stays quiet.

``json`` format is one JSON object a line with ``severity``, ``message`` and ``time``,
the fields Cloud Logging reads from a Cloud Run job's output (structured logging).
Standard library only: the agent imports it at start.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, TextIO

Format = Literal["text", "json"]
FORMATS: tuple[Format, ...] = ("text", "json")

_lock = threading.Lock()
_writer: Callable[[dict[str, Any]], None] | None = None

# Kinds worth a second look in a log viewer; the rest are INFO.
_WARNING_KINDS = frozenset(
    {"preemption-notice", "recovering", "placement-blocked", "placement-skipped", "cancel"}
)


def severity(kind: str, data: dict[str, Any]) -> str:
    """The Cloud Logging severity of an event of ``kind``."""
    if kind == "run-ended":
        state = data.get("state")
        return "ERROR" if state == "FAILED" else "WARNING" if state == "STOPPED" else "INFO"
    if kind == "attempt-ended":
        return "INFO" if data.get("reason") in (None, "succeeded") else "WARNING"
    if kind in ("agent-error", "internal-error"):
        return "ERROR"
    if kind == "agent-warning" or kind in _WARNING_KINDS:
        return "WARNING"
    return "INFO"


def _text_line(rec: dict[str, Any]) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(rec["time"]))
    who = rec.get("run_id") or "agent"
    attempt = f" attempt={rec['attempt']}" if rec.get("attempt") is not None else ""
    reason = f" reason={rec['reason']}" if rec.get("reason") else ""
    return f"{stamp} {rec['severity']:<7} {who}{attempt} {rec['kind']}{reason}: {rec['message']}"


def _json_line(rec: dict[str, Any]) -> str:
    body = dict(rec)
    if body.get("run_id"):  # the summary line a log viewer shows
        body["message"] = f"{body['run_id']}: {body['message']}"
    body["time"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(rec["time"])) + (
        f".{int(rec['time'] % 1 * 1e6):06d}Z"
    )
    labels = {k: str(body[k]) for k in ("run_id", "agent") if body.get(k)}
    if labels:
        body["logging.googleapis.com/labels"] = labels
    return json.dumps(body, default=str, sort_keys=True)


def configure(fmt: Format | None, stream: TextIO | None = None, **fields: Any) -> None:
    """Print every event from now on to ``stream`` (stderr) in ``fmt``; None stops.
    ``fields`` (e.g. ``agent=<id>``) are added to every JSON line."""
    global _writer
    if fmt is None:
        _writer = None
        return
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}; one of {', '.join(FORMATS)}")
    render = _json_line if fmt == "json" else _text_line

    def write(rec: dict[str, Any]) -> None:
        out = stream or sys.stderr
        line = render({**fields, **rec})
        with _lock:
            out.write(line + "\n")
            out.flush()

    _writer = write


def emit(
    kind: str,
    message: str,
    *,
    run_id: str | None = None,
    attempt: int | None = None,
    when: float | None = None,
    **data: Any,
) -> None:
    """Log one event (or an agent's own line: kind ``agent``, ``agent-warning``…)."""
    writer = _writer
    if writer is None:
        return
    rec: dict[str, Any] = {
        "time": when if when is not None else time.time(),
        "severity": severity(kind, data),
        "kind": kind,
        "message": message,
        "run_id": run_id,
        "attempt": attempt,
        **{k: v for k, v in data.items() if isinstance(v, (str, int, float, bool))},
    }
    try:
        writer({k: v for k, v in rec.items() if v is not None})
    except (OSError, ValueError):
        pass  # a closed or full stderr must not stop the agent
