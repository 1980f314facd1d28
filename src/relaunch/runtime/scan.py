"""Classifying a job's output: the fatal patterns of the seeds' entrypoint wrapper.

Built-in patterns classify an attempt *after* its command exited non-zero (a traceback
that the trainer caught and printed must not kill a healthy run). Patterns the user
lists in ``fatal_patterns`` end the attempt as soon as they appear.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from relaunch.states import Reason

# In priority order: the first kind found anywhere in the output wins.
BUILTIN_PATTERNS: list[tuple[Reason, str, re.Pattern[str]]] = [
    (
        Reason.QUOTA,
        "quota exceeded",
        re.compile(r"QUOTA_EXCEEDED|[Qq]uota exceeded|quotaExceeded|RESOURCE_EXHAUSTED"),
    ),
    (
        Reason.PERMISSION,
        "permission denied by Google Cloud",
        re.compile(
            r"PERMISSION_DENIED|403 Forbidden|\bdoes not have [\w.]+ (?:access|permission)|"
            r"google\.api_core\.exceptions\.(?:PermissionDenied|Forbidden)"
        ),
    ),
    (
        Reason.USER_ERROR,
        "CUDA out of memory: lower the batch size or use a larger GPU",
        re.compile(r"CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED"),
    ),
    (
        Reason.TRANSIENT,
        "NCCL communication failed",
        re.compile(
            r"NCCL (?:error|Error|WARN .*[Tt]imeout)|nccl(?:System|Internal|Remote)Error|"
            r"NCCL communicator was aborted"
        ),
    ),
    (
        Reason.TRANSIENT,
        "Google Cloud service error (500/503)",
        re.compile(
            r"\b50[03] (?:Internal Server Error|Service Unavailable|Server Error)|"
            r"google\.api_core\.exceptions\.(?:ServiceUnavailable|InternalServerError)"
        ),
    ),
    (Reason.USER_ERROR, "Python exception", re.compile(r"^Traceback \(most recent call last\):")),
]

_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)\b.*)$")


@dataclass
class Finding:
    reason: Reason
    detail: str


class OutputScanner:
    """Fed every output line; keeps the last lines and what they revealed."""

    def __init__(self, fatal_patterns: list[str], keep: int = 50) -> None:
        self.last_lines: deque[str] = deque(maxlen=keep)
        self._user = [re.compile(p) for p in fatal_patterns]
        self._found: dict[int, str] = {}  # index into BUILTIN_PATTERNS → first line
        self._exception: str | None = None
        self.fatal: Finding | None = None  # a user pattern matched: end the attempt now

    def feed(self, line: str) -> None:
        line = line.rstrip("\r\n")
        self.last_lines.append(line)
        for i, (_, _, pattern) in enumerate(BUILTIN_PATTERNS):
            if i not in self._found and pattern.search(line):
                self._found[i] = line.strip()
        if m := _EXCEPTION_LINE.match(line):
            self._exception = m.group(1)
        if self.fatal is None:
            for pattern in self._user:
                if pattern.search(line):
                    self.fatal = Finding(
                        Reason.USER_ERROR, f"fatal pattern matched: {line.strip()}"
                    )
                    break

    def classify(self, exit_code: int) -> Finding:
        """The reason for an attempt whose command exited with ``exit_code``."""
        if self.fatal is not None:
            return self.fatal
        if exit_code == 0:
            return Finding(Reason.SUCCEEDED, "exit code 0")
        if self._found:
            i = min(self._found)
            reason, what, _ = BUILTIN_PATTERNS[i]
            line = (
                self._exception
                if reason is Reason.USER_ERROR and self._exception
                else (self._found[i])
            )
            return Finding(reason, f"{what}: {line[:300]}")
        return Finding(Reason.USER_ERROR, f"the command exited with code {exit_code}")
