from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from relaunch.store import LocalStore

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("child.py")


def wait_for(cond: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Attempt:
    """One runtime process (``python -m relaunch.runtime -- COMMAND``), started like the
    local backend starts it: in a session and process group of its own."""

    def __init__(self, rt: RuntimeEnv, n: int, command: list[str], **settings: Any) -> None:
        self.rt, self.n = rt, n
        scratch = rt.root / f"scratch-{n}"
        env = dict(os.environ)
        env.update(
            RELAUNCH_RUN_ID=rt.run_id,
            RELAUNCH_ATTEMPT=str(n),
            RELAUNCH_STORE=str(rt.store.root),
            RELAUNCH_SCRATCH=str(scratch),
            RELAUNCH_CHECKPOINT_DIR=str(rt.ckpt_dir or scratch / "checkpoints"),
            RELAUNCH_RUNTIME=json.dumps({"heartbeat_interval": 0.5, **settings}),
            PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
        )
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        rt.store.put(f"runs/{rt.run_id}/run.json", json.dumps({"attempt": n}).encode())
        self.out = open(rt.root / f"runtime-{n}.out", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "relaunch.runtime", "--", *command],
            cwd=ROOT,
            env=env,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def notice(self) -> None:
        """SIGTERM to the runtime alone, as `docker stop` and a spot reclaim send it."""
        os.kill(self.proc.pid, signal.SIGTERM)

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.out.close()

    def output(self) -> str:
        return (self.rt.root / f"runtime-{self.n}.out").read_text(errors="replace")

    def result(self) -> dict[str, Any]:
        data, _ = self.rt.store.get(f"runs/{self.rt.run_id}/attempts/{self.n}.result.json")
        return dict(json.loads(data))

    def group_left(self) -> list[int]:
        out = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[2]) == self.proc.pid and fields[0] not in ("Z", "X"):
                    out.append(int(entry.name))
        return out

    def kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class RuntimeEnv:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = LocalStore(root / "store")
        self.run_id = "r"
        self.markers = root / "markers"
        self.ckpt_dir: Path | None = None
        self.attempts: list[Attempt] = []

    def start(self, n: int, command: list[str], **settings: Any) -> Attempt:
        attempt = Attempt(self, n, command, **settings)
        self.attempts.append(attempt)
        return attempt

    def child(self, *args: str) -> list[str]:
        return [sys.executable, str(CHILD), "--markers", str(self.markers), *args]

    def latest(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.store.get(f"runs/{self.run_id}/checkpoints/LATEST")[0]))
        except Exception:
            return None

    def marks(self, prefix: str) -> dict[int, str]:
        if not self.markers.exists():
            return {}
        return {
            int(p.name.split("-")[1]): p.read_text()
            for p in self.markers.iterdir()
            if p.name.startswith(prefix + "-")
        }

    def events(self, kind: str) -> list[dict[str, Any]]:
        out = []
        for meta in self.store.list(f"runs/{self.run_id}/events/").objects:
            event = json.loads(self.store.get(meta.key)[0])
            if event["kind"] == kind:
                out.append(event)
        return out


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[RuntimeEnv]:
    env = RuntimeEnv(tmp_path)
    yield env
    for attempt in env.attempts:
        attempt.kill_group()
        if not attempt.out.closed:
            attempt.proc.wait(10)
            attempt.out.close()
