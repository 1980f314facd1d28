"""Chaos: agents SIGKILLed and frozen (SIGSTOP, sometimes past their lease) at random
instants, with some store writes losing their answers, over many short runs. Checked
from the trainers' own ledger: every run SUCCEEDED with all its steps, and no two
trainers of a run ever ran at the same time.

The seed is printed on failure; RELAUNCH_CHAOS_SEED replays one.
"""

from __future__ import annotations

import os
import random
import subprocess
import time

from tests.e2e.conftest import Env
from tests.e2e.monkey import Monkey
from tests.e2e.test_guarantee import assert_one_trainer_at_a_time, job, ledger

RUNS = 20
STEPS = 60
FAULTS = "lose-answers=0.02"


def test_agents_killed_and_frozen_at_random_lose_and_double_nothing(env: Env) -> None:
    seed = int(os.environ.get("RELAUNCH_CHAOS_SEED") or time.time_ns() % 100_000)
    rng = random.Random(seed)
    path = env.root / "ledger"
    rids = [env.ws.submit(job(env, path, name=f"c{i}", steps=STEPS)) for i in range(RUNS)]

    def start() -> subprocess.Popen[bytes]:
        return env.start_agent("--lease-ttl", "2", "--max-jobs", "6", faults=FAULTS)

    monkey = Monkey(rng, [start() for _ in range(3)], start, freeze_for=(0.5, 5.0))  # lease 2 s
    deadline = time.monotonic() + 300
    try:
        while not all(s.terminal for s in env.ws.summaries()):
            assert time.monotonic() < deadline, f"seed {seed}: not done\n{env.diagnose()}"
            time.sleep(rng.uniform(0.2, 1.0))
            monkey.strike()
    finally:
        monkey.wake_all()
    kills, freezes = monkey.kills, monkey.freezes
    assert kills >= 2 and freezes >= 2, f"seed {seed}: too little chaos to mean anything"
    states = {s.run_id: s.state for s in env.ws.summaries()}
    assert set(states.values()) == {"SUCCEEDED"}, f"seed {seed}: {states}\n{env.diagnose()}"
    entries = ledger(path)
    for rid in rids:
        assert_one_trainer_at_a_time(entries[rid])
        steps = {e["step"] for e in entries[rid] if e["kind"] == "step"}
        assert steps == set(range(1, STEPS + 1)), f"seed {seed}: {rid} missed steps"
