"""`relaunch stop` while the agent that holds the run is frozen (SIGSTOP): the stop is
recorded at once; the run is stopped here once that agent's lease runs out, or — when
the wait is shorter than the lease — one line says so and the exit is 4."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from relaunch.runs import keys
from relaunch.states import RunState
from tests.e2e.conftest import Env
from tests.e2e.test_guarantee import is_stopped, job, ledger


def _stop(env: Env, rid: str, wait: float) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "relaunch.cli.main", "stop", rid, "--wait", str(wait)]
    return subprocess.run(
        [*argv, "--store", env.ws.store.url],
        cwd=env.root,
        capture_output=True,
        text=True,
        timeout=wait + 120,
    )


def _trainers(path: Path, rid: str) -> set[int]:
    return {e["pid"] for e in ledger(path)[rid]}


def _frozen_agent_running(env: Env, path: Path, lease: str) -> tuple[str, subprocess.Popen[bytes]]:
    rid = env.ws.submit(job(env, path, steps=5000))
    agent = env.start_agent("--lease-ttl", lease)
    env.wait_for(lambda: env.step(rid) >= 3)
    agent.send_signal(signal.SIGSTOP)
    env.wait_for(lambda: is_stopped(agent.pid))
    return rid, agent


def test_stop_takes_over_a_run_whose_frozen_agent_lease_ran_out(env: Env) -> None:
    """Before: `stop` waited its whole wait on the frozen agent, printed RUNNING and
    exited 0, and the trainer ran on."""
    path = env.root / "ledger"
    rid, agent = _frozen_agent_running(env, path, "8")
    stopped = _stop(env, rid, wait=180)
    assert (stopped.returncode, stopped.stdout) == (0, f"{rid}: STOPPED\n"), stopped.stderr
    assert env.ws.repo.get_run(rid).state is RunState.STOPPED
    attempt = env.ws.repo.find_attempt(rid, 1)[0]  # type: ignore[index]
    assert attempt.ended_at is not None
    # The frozen agent wakes up: it learns it was found dead and starts nothing again.
    agent.send_signal(signal.SIGCONT)
    env.wait_for(lambda: "found this one dead" in (env.root / "agent-0.log").read_text())
    steps = len(ledger(path)[rid])
    assert env.ws.repo.get_run(rid).state is RunState.STOPPED
    assert _trainers(path, rid) == {ledger(path)[rid][0]["pid"]}
    assert len(ledger(path)[rid]) == steps  # no step after the stop


def test_stop_shorter_than_a_frozen_agents_lease_says_so_and_exits_4(env: Env) -> None:
    path = env.root / "ledger"
    rid, agent = _frozen_agent_running(env, path, "60")
    agent_key = keys.agent_key(json.loads(env.ws.store.get(keys.lease_key(rid))[0])["agent_id"])

    def silent_for() -> float:
        meta = env.ws.store.stat(agent_key)
        assert meta is not None
        return time.time() - meta.updated_ns / 1e9

    # Frozen past the renewal it owes (every third of its 60 s lease), its lease not over
    # for half a minute yet: however slow `relaunch stop` is to start here.
    env.wait_for(lambda: silent_for() > 24)
    pending = _stop(env, rid, wait=1)
    assert pending.returncode == 4 and pending.stdout == "", pending.stderr
    (line,) = pending.stderr.strip().splitlines()
    assert line.startswith(f"{rid}: stop recorded, but the run is still RUNNING after ")
    assert "has not answered for" in line and "frozen or cut off" in line, line
    assert "its lease ends in" in line, line
    assert env.ws.store.stat(keys.stop_key(rid)) is not None
    # The stop was recorded: the agent applies it when it wakes up.
    agent.send_signal(signal.SIGCONT)
    env.wait_for(lambda: env.ws.repo.get_run(rid).state is RunState.STOPPED, timeout=120)
    assert len(_trainers(path, rid)) == 1
