"""Chaos at scale: three `relaunch agent` processes share 200 runs that are all live at
once, while agents are SIGKILLed and frozen (SIGSTOP, sometimes past their lease) at
random instants and some of their store writes lose their answers. Afterwards every run
SUCCEEDED, none was lost, and no two attempts of a run were ever alive at the same time.

Simulated attempts, not real runtimes: measured on this 2-core machine, 200 real
runtime + trainer pairs on the local backend take ~3.5 GB (proportional set size,
~18 MB a pair) and ~1.2 cores at a heartbeat every 2 s (0.6 % of a core a pair), before
their start-up (~0.3 s of CPU each) and the agents — and on a shared machine a first try
had 12 of 200 runs recorded RUNNING after 11 minutes. So the attempts are those of
tests/simfleet: the agents are the real CLI with a simulated backend registered, and
one simulator process is every attempt's runtime through the real store and the
runtime's own fencing code (the fence check and the heartbeat slot, every 2 s). Its
ledger has a line per start, heartbeat and end of each simulated command, written
before anyone can see the command over; overlapping lives of one run's commands are
what "two attempts alive at once" means here. (Real runtimes under chaos: test_chaos.py.)

A quarter of the runs have their first attempt preempted 10 s after it starts (the
agents recover them with a second attempt, amid the chaos). Attempts end once the test
has seen all 200 runs RUNNING at one moment (a plan file the simulator reads); chaos
goes on until every attempt has ended, and then the agents, left alone, have CALM
seconds to conclude every run (a run whose lease names a live agent that does not know
it holds it would wait forever; chaos that went on would free it by killing that
agent). The seed is printed on failure; RELAUNCH_CHAOS_SEED
replays one (RELAUNCH_CHAOS_FAULTS replaces the agents' RELAUNCH_FAULTS).

It runs on a local store and on a bucket of the fake cloud. On the bucket the agents
take their other paths (the read-ahead pool, reconciles from threads, the HTTP pool)
and reach the fake through an endpoint of their own, where a share of their requests
also fail server-side (SERVER_FAULTS: 503s, and answers cut off half way after the
call took effect); the simulator and the test read through the main one, unharmed.
RELAUNCH_CHAOS_SERVER_FAULTS (e.g. ``503=0.05,drop=0.02``) replaces those shares.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaunch.api import Workspace
from relaunch.runs import queue
from relaunch.spec.project import ProjectConfig
from relaunch.store.gcs import GCSStore
from tests.e2e.conftest import Env
from tests.e2e.monkey import Monkey
from tests.e2e.test_guarantee import assert_one_trainer_at_a_time
from tests.fakegcp.fake import FakeGCP
from tests.fakegcp.faults import Fault
from tests.simfleet.backend import register, sim_record

RUNS = 200
FAULTS = os.environ.get("RELAUNCH_CHAOS_FAULTS", "lose-answers=0.02")
LEASE = "4"  # seconds: a frozen agent is thawed sometimes before it expires, sometimes after
PREEMPTED = 0.25  # of the runs: their first attempt is preempted 10 s after it started
MAX_JOBS = 100  # per agent: two agents hold every run; an agent that dies leaves two halves
CALM = 120.0  # seconds to conclude every run once the attempts are over (~30 s taken)
DEADLINE = 600.0  # seconds for everything (a failing test only); it took 130-260 s loaded
ROOT = Path(__file__).parents[2]
BUCKET = "gs://relaunch-chaos/store"
# shares of the agents' requests on a bucket
SERVER_FAULTS = {"503": 0.01, "drop": 0.005} | {
    name: float(share)
    for name, _, share in (
        item.partition("=")
        for item in os.environ.get("RELAUNCH_CHAOS_SERVER_FAULTS", "").split(",")
        if item
    )
}


class Fleet:
    """Agent processes with the simulated backend, and the simulator, on env's store."""

    def __init__(self, env: Env, fake: FakeGCP | None = None) -> None:
        self.env = env
        self.dir = env.root / "sim"
        self.dir.mkdir()
        self.plan = env.root / "plan.json"
        self.ledger = env.root / "ledger"
        self.environ = {**os.environ, "RELAUNCH_SIM_DIR": str(self.dir)}
        self.environ["RELAUNCH_SIM_POLL_INTERVAL"] = "0.2"  # the local backend's
        self.agent_environ = {**self.environ, "RELAUNCH_FAULTS": FAULTS}
        argv = [sys.executable, "-m", "tests.simfleet.simulator", "--dir", str(self.dir)]
        argv += ["--store", env.ws.store.url, "--interval", "2", "--workers", "4"]
        if fake is not None:
            argv += ["--endpoint", fake.url]
            self.agent_environ |= fake.env_for(fake.add_endpoint("agents"))
        argv += ["--plan", str(self.plan), "--ledger", str(self.ledger)]
        argv += ["--preempt", str(PREEMPTED), "--preempt-after", "10"]
        self.sim = subprocess.Popen(argv, cwd=ROOT, env=self.environ)
        self.agents: list[subprocess.Popen[bytes]] = []
        self.fake = fake

    def start_agent(self) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "tests.simfleet.agent", "agent"]
        argv += ["--store", self.env.ws.store.url, "--poll", "0.5", "--lease-ttl", LEASE]
        argv += ["--max-jobs", str(MAX_JOBS)]
        log = open(self.env.root / f"agent-{len(self.agents)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=self.agent_environ, stdout=subprocess.DEVNULL, stderr=log
        )
        log.close()
        self.agents.append(proc)
        self.env.agents.append(proc)  # killed at teardown
        return proc

    def finish(self) -> None:
        """Every attempt ends (succeeded) now, and any that starts later at once."""
        tmp = self.plan.with_suffix(".tmp")
        tmp.write_text(json.dumps({s.run_id: time.time() for s in self.env.ws.summaries()}))
        os.replace(tmp, self.plan)

    def stop(self) -> None:
        if self.sim.poll() is None:
            self.sim.send_signal(signal.SIGTERM)
            try:
                self.sim.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.sim.kill()


@pytest.fixture(params=["local", "gcs"])
def fleet(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Fleet]:
    """The fleet on a local store, or on a bucket of the fake cloud."""
    register()
    fake: FakeGCP | None = None
    if request.param == "local":
        env = request.getfixturevalue("env")
    else:
        fake = request.getfixturevalue("fake_gcp")
        monkeypatch.setenv("RELAUNCH_SCRATCH_ROOT", str(tmp_path / "scratch"))
        monkeypatch.delenv("RELAUNCH_STORE", raising=False)
        fake.gcs.create_bucket(BUCKET[len("gs://") :].partition("/")[0])
        config = ProjectConfig()
        config._root = tmp_path
        env = Env(tmp_path, Workspace(config, GCSStore(BUCKET, retry_initial=0.05)))
    f = Fleet(env, fake)
    try:
        yield f
    finally:
        f.stop()
        if fake is not None:
            env.cleanup()


def server_faults(fake: FakeGCP, seed: int) -> list[Fault]:
    """A share of the agents' requests fail at the fake (not the simulator's or ours)."""
    fake.faults.seed(seed)
    return [
        fake.faults.fail("storage", times=None, share=SERVER_FAULTS["503"], via="agents"),
        fake.faults.drop("storage", times=None, share=SERVER_FAULTS["drop"], via="agents"),
    ]


def no_agent_bug(env: Env, seed: int) -> None:
    """No agent logged a traceback: a failing store is logged as its error; anything
    else that failed a tick or a run's reconcile is a bug of the agent's."""
    for log in sorted(env.root.glob("agent-*.log")):
        text = log.read_text()
        at = text.find("Traceback")
        assert at < 0, f"seed {seed}: {log.name}:\n{text[max(0, at - 200) : at + 3000]}"


def one_life_at_a_time(fleet: Fleet, seed: int) -> dict[str, list[dict[str, object]]]:
    """The ledger so far, after checking that no two simulated commands of a run lived
    at once (a command still alive spans from its start to its latest line: overlapping
    it is already a second life)."""
    entries: dict[str, list[dict[str, object]]] = defaultdict(list)
    if fleet.ledger.exists():
        for line in fleet.ledger.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:  # the line being written as we read
                continue
            entries[entry["run"]].append(entry)
    for rid, lines in entries.items():
        try:
            assert_one_trainer_at_a_time(lines)
        except AssertionError as e:
            raise AssertionError(f"seed {seed}: {rid}: {e}") from None
    return entries


def progress(env: Env) -> Counter[str]:
    return Counter(s.state for s in env.ws.summaries())


@pytest.mark.timeout(DEADLINE + 120)
def test_three_agents_killed_and_frozen_at_random_over_200_live_runs(fleet: Fleet) -> None:
    env = fleet.env
    seed = int(os.environ.get("RELAUNCH_CHAOS_SEED") or time.time_ns() % 100_000)
    print(f"seed {seed}")  # shown if the test fails, even by its timeout
    rng = random.Random(seed)
    faults = server_faults(fleet.fake, seed) if fleet.fake is not None else []
    rids = [f"s{i:03d}" for i in range(RUNS)]
    for rid in rids:
        queue.enqueue(env.ws.store, sim_record(rid, heartbeat_interval=2.0))
    agents = [fleet.start_agent() for _ in range(3)]
    monkey = Monkey(rng, agents, fleet.start_agent, freeze_for=(1.0, 8.0))
    all_live = False
    calm_until: float | None = None  # once every attempt has ended: no more chaos
    deadline = time.monotonic() + DEADLINE
    next_audit = time.monotonic() + 20.0
    while True:
        states = progress(env)
        if all_live and set(states) <= {"SUCCEEDED", "FAILED", "STOPPED"}:
            break
        assert time.monotonic() < deadline, f"seed {seed}: not done: {states}\n{env.diagnose()}"
        assert calm_until is None or time.monotonic() < calm_until, (
            f"seed {seed}: runs not concluded {CALM:.0f} s after their attempts ended, "
            f"without chaos: {states}\n{env.diagnose()}"
        )
        if not all_live and states["RUNNING"] == RUNS and monkey.kills >= 3 and monkey.freezes >= 3:
            all_live = True  # all 200 live at once, agents hit meanwhile: now they may end
            fleet.finish()
        time.sleep(rng.uniform(2.0, 6.0))
        now = time.monotonic()
        if now >= next_audit or (all_live and calm_until is None):
            entries = one_life_at_a_time(fleet, seed)  # a second life fails the test at once
            next_audit = now + 20.0
            if all_live and all(any(e["kind"] == "end" for e in entries[r]) for r in rids):
                monkey.wake_all()
                calm_until = now + CALM
        if calm_until is None:
            monkey.strike()
    monkey.wake_all()
    kills, freezes = monkey.kills, monkey.freezes
    assert kills >= 3 and freezes >= 3, f"seed {seed}: too little chaos to mean anything"
    print(f"kills {kills} freezes {freezes} server faults hit {[f.hits for f in faults]}")
    assert all(f.hits for f in faults), f"seed {seed}: no server fault hit"
    summaries = {s.run_id: s.state for s in env.ws.summaries()}
    assert sorted(summaries) == rids, f"seed {seed}: runs lost or unlisted"
    assert set(summaries.values()) == {"SUCCEEDED"}, f"seed {seed}: {env.diagnose()}"
    entries = one_life_at_a_time(fleet, seed)
    for rid in rids:
        assert any(e["kind"] == "end" for e in entries[rid]), f"seed {seed}: {rid} never ended"
    recovered = [rid for rid in rids if {e["attempt"] for e in entries[rid]} == {"1", "2"}]
    assert len(recovered) >= RUNS * PREEMPTED / 2, f"seed {seed}: too few recoveries"
    no_agent_bug(env, seed)
