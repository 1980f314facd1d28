"""Running a cloud workload as a local process, the way the cloud would run it.

Each workload gets its own process group (so a preemption reaches the trainer and
everything it started) and a log file that stands in for the container's output
(Cloud Logging, serial port). Preemption is what spot capacity does: SIGTERM, the
notice period, then SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path


class Workload:
    """One running command. Thread-safe; every wait is bounded."""

    def __init__(self, argv: list[str], env: Mapping[str, str], log: Path, cwd: Path) -> None:
        self.log = log
        self.argv = argv
        self.preempted = False
        self._lock = threading.Lock()
        log.parent.mkdir(parents=True, exist_ok=True)
        cwd.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            try:
                self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                    argv,
                    env=dict(env),
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                self.start_error: str | None = None
            except OSError as e:  # command not found in the "image"
                self.proc = None
                self.start_error = f"{argv[0]}: {e.strerror}"
                out.write(f"exec failed: {self.start_error}\n".encode())

    @property
    def exit_code(self) -> int | None:
        """None while running; the exit status (negative: killed by that signal) after."""
        if self.proc is None:
            return 127
        return self.proc.poll()

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _signal(self, sig: int) -> None:
        # The whole group: what the first process started may outlive it (a shell
        # killed by SIGTERM while its container still saves a checkpoint).
        if self.proc is not None and (self.proc.poll() is None or self.group_alive()):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def group_alive(self) -> bool:
        """Whether any process of the workload's group still runs (zombies aside)."""
        if self.proc is None:
            return False
        if self.proc.poll() is None:
            return True
        pgid = str(self.proc.pid)
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[2] == pgid and fields[0] not in ("Z", "X"):
                return True
        return False

    def terminate(self, notice: float) -> threading.Thread:
        """SIGTERM now, SIGKILL after ``notice`` seconds if still alive (in a thread)."""
        self._signal(signal.SIGTERM)

        def finish() -> None:
            deadline = time.monotonic() + notice
            while time.monotonic() < deadline and self.group_alive():
                time.sleep(0.02)
            self.kill()

        thread = threading.Thread(target=finish, daemon=True)
        thread.start()
        return thread

    def kill(self) -> None:
        self._signal(signal.SIGKILL)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def base_env() -> dict[str, str]:
    """What a job's container would inherit here: PATH, and this interpreter's import path."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


class Executor:
    """All workloads the fake started; ``stop_all`` kills whatever is left."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._workloads: list[Workload] = []
        self._lock = threading.Lock()

    def start(self, name: str, argv: list[str], env: Mapping[str, str]) -> Workload:
        safe = name.replace("/", "_")
        workload = Workload(
            argv, env, self.root / "logs" / f"{safe}.log", self.root / "work" / safe
        )
        with self._lock:
            self._workloads.append(workload)
        return workload

    def stop_all(self) -> None:
        with self._lock:
            workloads, self._workloads = self._workloads, []
        for workload in workloads:
            workload.kill()
