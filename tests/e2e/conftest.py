from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from relaunch.agent.loop import Agent, AgentOptions
from relaunch.api import Workspace
from relaunch.spec.project import ProjectConfig
from relaunch.store import LocalStore

TRAINER = Path(__file__).with_name("trainer.py")


class Env:
    """A project folder with a local store, a markers folder and job writers."""

    def __init__(self, root: Path, ws: Workspace | None = None) -> None:
        self.root = root
        self.markers = root / "markers"
        if ws is None:
            config = ProjectConfig()
            config._root = root
            ws = Workspace(config, LocalStore(root / "store"))
        self.ws = ws
        self.agents: list[subprocess.Popen[bytes]] = []

    def job(
        self,
        name: str = "t",
        *,
        steps: int = 20,
        step_time: float = 0.02,
        every: int = 5,
        trainer_args: list[str] | None = None,
        **spec: Any,
    ) -> Path:
        command = [
            "python",
            str(TRAINER),
            "--steps",
            str(steps),
            "--step-time",
            str(step_time),
            "--every",
            str(every),
            "--markers",
            str(self.markers),
            *(trainer_args or []),
        ]
        doc = {
            "name": name,
            "command": command,
            "heartbeat_interval": 0.2,
            "checkpoints": {"sync_interval": 0},
            "grace_period": 5,
            **spec,
        }
        return self.write_job(name, doc)

    def write_job(self, name: str, doc: dict[str, Any]) -> Path:
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc))
        return path

    def step(self, run_id: str) -> int:
        """The step of the run's last heartbeat (0 before the first)."""
        hb = self.ws.repo.heartbeat(run_id)
        return (hb[0].step or 0) if hb else 0

    def markers_of(self, run_id: str, kind: str) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.markers.glob(f"{run_id}.*.{kind}"))]

    def start_agent(self, *extra: str, faults: str | None = None) -> subprocess.Popen[bytes]:
        """An agent process (lease 2 s unless ``extra`` says otherwise); ``faults`` sets
        its RELAUNCH_FAULTS (see relaunch.faults)."""
        env = dict(os.environ)
        if faults:
            env["RELAUNCH_FAULTS"] = faults
        argv = [
            sys.executable,
            "-m",
            "relaunch.cli.main",
            "agent",
            "--store",
            self.ws.store.url,
            "--poll",
            "0.1",
            "--lease-ttl",
            "2",
            *extra,
        ]
        log = open(self.root / f"agent-{len(self.agents)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, env=env)
        log.close()
        self.agents.append(proc)
        return proc

    @contextlib.contextmanager
    def agent_thread(self) -> Iterator[Agent]:
        """An agent ticking in this process for the duration of the block."""
        agent = Agent(self.ws.store, AgentOptions(poll=0.1), log=lambda _m: None)
        thread = threading.Thread(target=agent.run, daemon=True)
        thread.start()
        try:
            yield agent
        finally:
            agent.stopping.set()
            thread.join(timeout=10)

    def wait_for(self, check: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s\n{self.diagnose()}")
            time.sleep(0.1)

    def diagnose(self) -> str:
        """The runs' states and the agents' stderr, for a failure message."""
        lines = []
        for run in self.ws.repo.runs():
            lines.append(f"{run.run_id}: {run.state.value} attempt {run.attempt} {run.detail}")
        for log in sorted(self.root.glob("agent-*.log")):
            lines.append(f"--- {log.name}\n" + log.read_text()[-3000:])
        return "\n".join(lines)

    def cleanup(self) -> None:
        for proc in self.agents:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        for run in self.ws.repo.runs():
            for attempt in self.ws.repo.attempts(run.run_id, run.attempt):
                if attempt.handle and attempt.handle.get("pid"):
                    try:
                        os.killpg(int(attempt.handle["pid"]), signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    monkeypatch.setenv("RELAUNCH_SCRATCH_ROOT", str(tmp_path / "scratch"))
    monkeypatch.delenv("RELAUNCH_STORE", raising=False)
    e = Env(tmp_path)
    yield e
    e.cleanup()
