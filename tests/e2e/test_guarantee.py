"""The guarantee under faults (DESIGN.md §7): one trainer per run, no run lost, poison
kept local — with agents frozen (SIGSTOP) or killed at chosen instants, records damaged,
answers lost. Fault points come from ``RELAUNCH_FAULTS`` (relaunch.faults).

Trainers append every step to a ledger (``--ledger``): who ran it (pid) and when. Two
trainers of one run would show as two pids whose step times interleave.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relaunch.agent.loop import Agent, AgentOptions
from relaunch.api import Workspace
from relaunch.runs import keys, leases, queue
from relaunch.spec.project import ProjectConfig
from relaunch.states import Reason, RunState
from relaunch.store import LocalStore
from tests.e2e.conftest import Env


def ledger(path: Path) -> dict[str, list[dict[str, Any]]]:
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if path.exists():
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            by_run[entry["run"]].append(entry)
    return by_run


def assert_one_trainer_at_a_time(entries: list[dict[str, Any]]) -> None:
    """No two trainer processes of one run have overlapping lifetimes."""
    spans: dict[int, tuple[float, float]] = {}
    for e in entries:
        first, last = spans.get(e["pid"], (e["t"], e["t"]))
        spans[e["pid"]] = (min(first, e["t"]), max(last, e["t"]))
    ordered = sorted(spans.values())
    for (_, end), (start, _) in itertools.pairwise(ordered):
        assert end < start, f"two trainers overlapped: {spans}"


def is_stopped(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "T"


def job(env: Env, path: Path, **kw: Any) -> Path:
    steps = kw.pop("steps", 40)
    return env.job(
        steps=steps,
        step_time=kw.pop("step_time", 0.05),
        trainer_args=["--ledger", str(path), *kw.pop("trainer_args", [])],
        **kw,
    )


def kinds(env: Env, rid: str) -> list[str]:
    return [e.kind for e in env.ws.repo.events(rid)]


def test_an_agent_frozen_before_submitting_never_starts_a_second_trainer(env: Env) -> None:
    """Agent A freezes right after stamping the attempt (before the backend call); its
    lease expires and B starts the attempt. A wakes and submits too: what it started
    never runs the command, and A cancels it when it learns."""
    path = env.root / "ledger"
    rid = env.ws.submit(job(env, path, steps=60))
    a = env.start_agent(faults="pause@before-submit")
    env.wait_for(lambda: is_stopped(a.pid))
    env.start_agent()
    env.wait_for(lambda: len(ledger(path)[rid]) >= 10)
    a.send_signal(signal.SIGCONT)
    run = env.ws.wait(rid, timeout=120)
    assert run.state is RunState.SUCCEEDED, env.diagnose()
    entries = ledger(path)[rid]
    assert len({e["pid"] for e in entries}) == 1, entries[:3]
    assert entries[-1]["kind"] == "end" and entries[-1]["step"] == 60
    happened = kinds(env, rid)
    assert "duplicate-cancelled" in happened and "attempt-restarted" not in happened


def test_an_agent_frozen_after_submitting_is_found_not_doubled(env: Env) -> None:
    """A froze after the backend started the attempt, before recording its handle: B
    finds the running attempt by its run id instead of starting another."""
    path = env.root / "ledger"
    rid = env.ws.submit(job(env, path, steps=60))
    a = env.start_agent(faults="pause@after-submit")
    env.wait_for(lambda: is_stopped(a.pid))
    env.start_agent()
    env.wait_for(lambda: "attempt-found" in kinds(env, rid))
    a.send_signal(signal.SIGCONT)
    run = env.ws.wait(rid, timeout=120)
    assert run.state is RunState.SUCCEEDED and run.attempt == 1, env.diagnose()
    assert len({e["pid"] for e in ledger(path)[rid]}) == 1


def test_an_attempt_that_ended_before_anyone_recorded_it_is_not_run_again(env: Env) -> None:
    """The agent died right after starting a short attempt; the attempt finished before
    the next agent looked. Its result in the store concludes it: it never runs twice."""
    path = env.root / "ledger"
    rid = env.ws.submit(job(env, path, steps=3, step_time=0.01))
    a = env.start_agent(faults="exit@after-submit")
    a.wait(timeout=60)
    env.wait_for(lambda: env.ws.store.stat(keys.result_key(rid, 1)) is not None)
    env.start_agent()
    run = env.ws.wait(rid, timeout=60)
    assert run.state is RunState.SUCCEEDED and run.attempt == 1, env.diagnose()
    assert len([e for e in ledger(path)[rid] if e["kind"] == "start"]) == 1


def test_a_submit_raced_by_a_claim_is_reported_queued_not_taken(env: Env) -> None:
    """An agent claims the queue item between the enqueuer's two writes and creates the
    record from it: the enqueuer recognises its own submission (exit 0, one run)."""
    agent = Agent(env.ws.store, AgentOptions(poll=0.1), log=lambda _m: None)
    store = env.ws.store
    assert isinstance(store, LocalStore)
    real_put = store.put

    def put(key: str, data: bytes, *, if_generation_match: int | None = None) -> int:
        gen = real_put(key, data, if_generation_match=if_generation_match)
        if key.startswith("queues/"):
            agent.tick()  # claims the item, creates the run record, starts attempt 1
        return gen

    store.put = put  # type: ignore[method-assign]
    try:
        rid = env.ws.submit(job(env, env.root / "ledger", steps=5))
    finally:
        store.put = real_put  # type: ignore[method-assign]
    assert env.ws.repo.get_run(rid).attempt == 1
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        assert env.ws.wait(rid, timeout=60).state is RunState.SUCCEEDED
    finally:
        agent.stopping.set()
        thread.join(timeout=10)
    assert len([e for e in ledger(env.root / "ledger")[rid] if e["kind"] == "start"]) == 1


def test_a_run_claimed_then_let_go_before_its_first_attempt_is_adopted(env: Env) -> None:
    """An agent stopped (Ctrl-C) after claiming — lease taken, item gone — and released
    its lease before naming attempt 1: the run is still QUEUED, with neither item nor
    lease. It is adopted, not lost."""
    rid = env.ws.submit(job(env, env.root / "ledger", steps=5))
    lease = leases.acquire(env.ws.store, rid, "ghost-agent", 30)
    assert lease is not None
    queue.remove_items_of(env.ws.store, "default", rid)
    leases.release(env.ws.store, lease)
    assert env.ws.repo.get_run(rid).state is RunState.QUEUED
    with env.agent_thread():
        assert env.ws.wait(rid, timeout=60).state is RunState.SUCCEEDED


def test_a_truncated_record_of_a_running_run_is_set_aside_once(env: Env) -> None:
    """run.json cut in half while the run trains: the agent sets the run aside as
    DAMAGED (one event, one log line), ends its trainer, and goes on serving others;
    ps lists it, status says why in one line, events still read."""
    logged: list[str] = []
    agent = Agent(env.ws.store, AgentOptions(poll=0.05), log=logged.append)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        rid = env.ws.submit(job(env, env.root / "ledger", steps=2000))
        env.wait_for(lambda: env.step(rid) >= 3)
        pid = int(env.ws.repo.find_attempt(rid, 1)[0].handle["pid"])  # type: ignore[index]
        record = env.ws.store.root / keys.run_key(rid)  # type: ignore[attr-defined]
        record.write_bytes(record.read_bytes()[:70])
        env.wait_for(lambda: env.ws.store.stat(keys.damaged_key(rid)) is not None)
        env.wait_for(lambda: not Path(f"/proc/{pid}").exists() or is_zombie(pid))
        other = env.ws.submit(job(env, env.root / "ledger", name="other", steps=5))
        assert env.ws.wait(other, timeout=60).state is RunState.SUCCEEDED
    finally:
        agent.stopping.set()
        thread.join(timeout=10)
    assert sum("set aside" in line for line in logged) == 1, logged
    assert kinds(env, rid).count("damaged") == 1
    cli = [sys.executable, "-m", "relaunch.cli.main"]
    store = ["--store", env.ws.store.url]
    ps = subprocess.run([*cli, "ps", "--all", *store], capture_output=True, text=True)
    assert ps.returncode == 0 and "DAMAGED" in ps.stdout and rid in ps.stdout
    status = subprocess.run([*cli, "status", rid, *store], capture_output=True, text=True)
    assert status.returncode != 0 and "Traceback" not in status.stderr
    assert "damaged" in status.stderr and len(status.stderr.strip().splitlines()) == 1
    events = subprocess.run([*cli, "events", rid, *store], capture_output=True, text=True)
    assert events.returncode == 0 and "damaged" in events.stdout


def test_a_deleted_record_of_a_running_run_is_set_aside_not_held_for_ever(env: Env) -> None:
    """run.json deleted by hand while the run trains: the agent held the run for ever
    (one slot fewer), its trainer ran on unwatched and ps no longer listed it. It is set
    aside like a damaged record: the trainer ends, the slot is free, ps says why."""
    agent = Agent(env.ws.store, AgentOptions(poll=0.05), log=lambda _: None)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        rid = env.ws.submit(job(env, env.root / "ledger", steps=2000))
        env.wait_for(lambda: env.step(rid) >= 3)
        pid = int(env.ws.repo.find_attempt(rid, 1)[0].handle["pid"])  # type: ignore[index]
        env.ws.store.delete(keys.run_key(rid))
        env.wait_for(lambda: not Path(f"/proc/{pid}").exists() or is_zombie(pid))
        env.wait_for(lambda: rid not in agent.owned)
    finally:
        agent.stopping.set()
        thread.join(timeout=10)
    (listed,) = [s for s in env.ws.summaries() if s.run_id == rid]
    assert listed.state == "DAMAGED" and "missing" in (listed.note or listed.reason or "")


def test_a_deleted_attempt_record_of_a_running_run_starts_no_second_life(env: Env) -> None:
    """attempts/1.json deleted while it trains: the agent wrote attempt 1 again and
    started it a second time under the same number, the first life gone from history.
    The run is set aside instead; the first life's runtime fences itself."""
    with env.agent_thread():
        rid = env.ws.submit(job(env, env.root / "ledger", steps=2000))
        env.wait_for(lambda: env.step(rid) >= 3)
        pid = int(env.ws.repo.find_attempt(rid, 1)[0].handle["pid"])  # type: ignore[index]
        env.ws.store.delete(keys.attempt_key(rid, 1))
        env.wait_for(lambda: env.ws.store.stat(keys.damaged_key(rid)) is not None)
        env.wait_for(lambda: not Path(f"/proc/{pid}").exists() or is_zombie(pid))
    run = env.ws.repo.get_run(rid)
    assert run.state is RunState.FAILED and "missing" in (run.detail or "")
    assert kinds(env, rid).count("attempt-submitted") == 1
    assert env.ws.store.stat(keys.attempt_key(rid, 1)) is None


def is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_damaged_queue_item_stops_nothing_behind_it(env: Env) -> None:
    bad = keys.queue_prefix("default") + "0-00000000000000000001-bad-run.json"
    env.ws.store.put(bad, b'{"run_id": "bad-run", "spec": {"heartbeat_interval": null')
    rid = env.ws.submit(job(env, env.root / "ledger", steps=5))
    with env.agent_thread():
        assert env.ws.wait(rid, timeout=60).state is RunState.SUCCEEDED
    assert env.ws.store.stat(bad) is None
    states = {s.run_id: s.state for s in env.ws.summaries()}
    assert states == {rid: "SUCCEEDED", "bad-run": "DAMAGED"}


def test_a_damaged_queue_item_of_an_intact_run_record_is_run_from_the_record(
    env: Env,
) -> None:
    """The enqueue wrote both; only the item was damaged: the run is not lost (it sat
    QUEUED for ever) nor set aside, it runs."""
    store = env.ws.store
    rid = env.ws.submit(job(env, env.root / "ledger", steps=5))
    (item,) = queue.items(store, "default")
    store.put(item, store.get(item)[0][:40])  # cut off
    with env.agent_thread():
        assert env.ws.wait(rid, timeout=60).state is RunState.SUCCEEDED
    assert store.stat(keys.damaged_key(rid)) is None


def test_a_sigkilled_trainer_is_killed_not_a_user_error(env: Env) -> None:
    """The out-of-memory killer's signature (SIGKILL from outside) is its own reason,
    with a note saying so, and the run is retried from its checkpoint."""
    rid = env.ws.submit(
        job(env, env.root / "ledger", steps=20, trainer_args=["--kill-at", "12"]),
        values=None,
    )
    with env.agent_thread():
        run = env.ws.wait(rid, timeout=90)
    assert run.state is RunState.SUCCEEDED, env.diagnose()
    first = env.ws.repo.find_attempt(rid, 1)[0]  # type: ignore[index]
    assert first.reason is Reason.KILLED and "out-of-memory" in (first.detail or "")


def test_the_run_ended_event_survives_an_agent_dying_right_after_the_end(env: Env) -> None:
    rid = env.ws.submit(job(env, env.root / "ledger", steps=3, step_time=0.01))
    a = env.start_agent(faults="exit@before-run-ended")
    a.wait(timeout=60)
    assert env.ws.repo.get_run(rid).state is RunState.SUCCEEDED
    assert "run-ended" not in kinds(env, rid)
    env.start_agent()
    env.wait_for(lambda: "run-ended" in kinds(env, rid))
    assert kinds(env, rid).count("run-ended") == 1


def test_an_unreadable_latest_heartbeat_is_no_heartbeat(env: Env) -> None:
    """A damaged heartbeat object (a runtime cut off mid-write on a broken filesystem) is
    read as none: the run goes on, nothing is set aside."""
    rid = env.ws.submit(job(env, env.root / "ledger", steps=30))
    with env.agent_thread():
        env.wait_for(lambda: env.step(rid) >= 2)
        hb = env.ws.store.root / keys.heartbeat_key(rid)  # type: ignore[attr-defined]
        os.truncate(hb, 5)
        assert env.ws.wait(rid, timeout=60).state is RunState.SUCCEEDED
    assert "damaged" not in kinds(env, rid)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB filesystem (tmpfs) that the test can fill up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Fill the disk up. Unbuffered writes: a buffered file would fail once more on
    close, with whatever the last write could not place (how much is left depends on
    what the store holds)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_slows_everything_and_kills_nothing(env: Env, small_disk: Path) -> None:
    """The store's disk fills up while a run trains: the agent and the runtime keep
    running and retry, the trainer is paused (never orphaned), and once space is freed
    the run finishes with every step, by one trainer."""
    config = ProjectConfig()
    config._root = env.root
    env.ws = Workspace(config, LocalStore(small_disk / "store"))
    path = env.root / "ledger"
    rid = env.ws.submit(job(env, path, steps=150))
    agent = env.start_agent("--lease-ttl", "4")
    env.wait_for(lambda: env.step(rid) >= 20)
    filler = fill(small_disk)
    log = env.root / "agent-0.log"
    env.wait_for(lambda: "disk is full" in log.read_text(), timeout=60)
    attempt = env.ws.repo.find_attempt(rid, 1)[0]  # type: ignore[index]
    runtime = int(attempt.handle["pid"])  # type: ignore[index]
    steps_then = len(ledger(path)[rid])
    time.sleep(8)  # a while on a full disk: see that nothing died in it
    assert agent.poll() is None and Path(f"/proc/{runtime}").exists()
    assert not is_zombie(runtime)
    children = Path(f"/proc/{runtime}/task/{runtime}/children").read_text().split()
    assert children, "the runtime lost its trainer"
    # Unconfirmed for over half the slot's TTL: the trainer waits, stopped, for the disk.
    assert all(is_stopped(int(pid)) for pid in children)
    assert len(ledger(path)[rid]) - steps_then < 150
    filler.unlink()
    run = env.ws.wait(rid, timeout=120)
    assert run.state is RunState.SUCCEEDED, env.diagnose()
    entries = ledger(path)[rid]
    assert len({e["pid"] for e in entries}) == 1
    assert entries[-1]["kind"] == "end" and entries[-1]["step"] == 150
