"""The command's process group: the preemption notice reaches every process of it.

Launchers (``accelerate launch``, ``torchrun``, ``bash -c``, ``python -m``) start the
trainer as a child; a notice sent to the launcher alone leaves a trainer that never
saves (or an orphan). So the runtime signals the whole group: SIGTERM first, SIGKILL
when the grace period is over.

When the runtime leads its own process group (a container's first process, a local
attempt), the command stays in that group — so whoever kills the group (the local
backend, the container's end) kills the command too, and an orphan is impossible —
and the runtime, which ignores the signals it sends itself, signals the group. Run
from a shell script that leads the group, the command gets a group of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any


class CommandGroup:
    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.shares_group = os.getpgrp() == os.getpid()

    def start(self, argv: list[str], **popen: Any) -> subprocess.Popen[bytes]:
        if not self.shares_group:
            popen["start_new_session"] = False
            popen["preexec_fn"] = os.setpgrp
        self.proc = subprocess.Popen(argv, **popen)
        return self.proc

    @property
    def pgid(self) -> int:
        assert self.proc is not None
        return os.getpgrp() if self.shares_group else self.proc.pid

    def members(self) -> list[int]:
        """Live processes of the command's group (the runtime itself excluded)."""
        pgid, me, out = self.pgid, os.getpid(), []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                out.append(int(entry.name))
        return out

    def signal_group(self, sig: signal.Signals) -> None:
        """Send ``sig`` to every process of the command's group. The caller ignores it
        in its own handler when it shares the group."""
        if self.proc is None:
            return
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def send(self, sig: signal.Signals) -> None:
        """Any signal to the command's processes: SIGTERM/SIGINT to the group (the
        runtime ignores its own copy), SIGKILL until none is left, others (SIGSTOP,
        SIGCONT) to each process but the runtime."""
        if sig is signal.SIGKILL:
            self.kill()
        elif not self.shares_group or sig in (signal.SIGTERM, signal.SIGINT):
            self.signal_group(sig)
        else:
            for pid in self.members():
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass

    def kill(self, deadline: float = 5.0) -> None:
        """SIGKILL every process of the command's group but the runtime, until none is
        left (a process may fork while the group is being killed)."""
        if self.proc is None:
            return
        if not self.shares_group:
            self.signal_group(signal.SIGKILL)
            return
        end = time.monotonic() + deadline
        while (pids := self.members()) and time.monotonic() < end:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.02)
