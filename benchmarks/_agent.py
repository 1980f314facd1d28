"""A store, a job writer and a `relaunch agent` subprocess for latency benchmarks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from relaunch.api import Workspace
from relaunch.spec.project import ProjectConfig
from relaunch.store import LocalStore

TRAINER = Path(__file__).with_name("_trainer.py")


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.markers = root / "markers"
        config = ProjectConfig()
        config._root = root
        self.ws = Workspace(config, LocalStore(root / "store"))
        os.environ["RELAUNCH_SCRATCH_ROOT"] = str(root / "scratch")
        self.agent: subprocess.Popen[bytes] | None = None

    def job(self, steps: int, step_time: float, blob_mb: int = 0, **spec: Any) -> Path:
        doc = {
            "name": "bench",
            "heartbeat_interval": 0.5,
            "checkpoints": {"sync_interval": 0},
            "grace_period": 30,
            "command": [
                "python",
                str(TRAINER),
                str(self.markers),
                str(steps),
                str(step_time),
                str(blob_mb),
            ],
            **spec,
        }
        path = self.root / "job.yaml"
        path.write_text(yaml.safe_dump(doc))
        return path

    def start_agent(self, *extra: str) -> None:
        argv = [
            sys.executable,
            "-m",
            "relaunch.cli.main",
            "agent",
            "--store",
            self.ws.store.url,
            *extra,
        ]
        self.agent = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not self.ws.store.list("agents/").objects:
            if time.monotonic() > deadline:
                raise RuntimeError("the agent did not start")
            time.sleep(0.05)

    def marker(self, run_id: str, attempt: int, kind: str, timeout: float = 60) -> dict[str, Any]:
        path = self.markers / f"{run_id}.{attempt}.{kind}"
        deadline = time.monotonic() + timeout
        while not path.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {path.name} after {timeout}s")
            time.sleep(0.005)
        for _ in range(100):
            try:
                return json.loads(path.read_text())  # type: ignore[no-any-return]
            except ValueError:
                time.sleep(0.005)
        raise RuntimeError(f"unreadable {path}")

    def direct_start_latency(self, runs: int) -> list[float]:
        """Baseline: Popen of the same trainer, no relaunch → its start stamp."""
        env = {
            **os.environ,
            "RELAUNCH_RUN_ID": "direct",
            "RELAUNCH_CHECKPOINT_DIR": str(self.root / "direct-ckpt"),
        }
        out = []
        for i in range(runs):
            env["RELAUNCH_ATTEMPT"] = str(i)
            t0 = time.time()
            proc = subprocess.Popen(
                [sys.executable, str(TRAINER), str(self.markers), "1", "0"], env=env
            )
            out.append(self.marker("direct", i, "start")["time"] - t0)
            proc.wait()
        return out

    def close(self) -> None:
        if self.agent is not None:
            self.agent.send_signal(signal.SIGTERM)
            try:
                self.agent.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.agent.kill()
        for run in self.ws.repo.runs():
            for attempt in self.ws.repo.attempts(run.run_id, run.attempt):
                if attempt.handle:
                    try:
                        os.killpg(int(attempt.handle["pid"]), signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
