"""The live-run index (runs/live.py): what is not over is found under ``live/``, what
ended recently under ``ended/``, and neither views nor adoption read the store's
history — with real agents, trainers and CLI processes on a local store.

Time passing is made real on the store itself: an object's age is its update time
(``os.utime`` on a local store's file is what "a minute later" looks like to a listing).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from relaunch.agent.loop import Agent, AgentOptions
from relaunch.runs import keys, live
from relaunch.states import RunState
from relaunch.store import LocalStore
from relaunch.store.base import ObjectStore
from tests.e2e.conftest import Env
from tests.e2e.test_guarantee import is_stopped, job
from tests.e2e.test_resume import relaunch


def under(env: Env, prefix: str) -> set[str]:
    return {m.key for m in env.ws.store.list(prefix).objects}


def age(env: Env, key: str, seconds: float) -> None:
    """Make ``key`` look ``seconds`` old to listings (a new generation, as a write)."""
    path = env.ws.store.root / key  # type: ignore[attr-defined]
    when = time.time() - seconds
    os.utime(path, (when, when))


def ps(env: Env, *args: str) -> list[dict[str, Any]]:
    out = relaunch(env, "ps", "--json", *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


class Counting:
    """A store that counts the reads of each kind of key (the agent's view of cost)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.url = store.url
        self.gets: list[str] = []

    def get(self, key: str) -> tuple[bytes, int]:
        self.gets.append(key)
        return self.store.get(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_the_index_follows_a_run_from_submit_to_end_and_back_on_resume(env: Env) -> None:
    rid = env.ws.submit(job(env, env.root / "ledger", steps=30))
    entry = json.loads(env.ws.store.get(keys.live_key(rid))[0])
    assert entry["queue"] == "default" and entry["backend"] == "local"
    with env.agent_thread():
        env.wait_for(lambda: env.step(rid) >= 3)
        # The runtime's heartbeat lives under live/, beside the entry.
        assert under(env, keys.live_prefix(rid)) == {
            keys.live_key(rid),
            keys.heartbeat_key(rid),
        }
        assert env.ws.store.stat(keys.run_prefix(rid) + "heartbeat.json") is None
        assert env.ws.wait(rid, timeout=90).state is RunState.SUCCEEDED
        env.wait_for(lambda: not under(env, keys.LIVE))
        assert under(env, keys.ENDED) == {keys.ended_key(rid)}
        assert live.index_ready(env.ws.store)  # the agent found the store new and indexed it
        listed = ps(env)
        assert [r["run_id"] for r in listed] == [rid] and listed[0]["state"] == "SUCCEEDED"

        resumed = env.ws.resume(rid)
        assert env.ws.store.stat(keys.live_key(rid)) is not None  # back in live/
        assert resumed.attempt == 2
        env.wait_for(lambda: env.ws.repo.get_run(rid).attempt == 2)
        assert env.ws.wait(rid, timeout=90).state is RunState.SUCCEEDED
        env.wait_for(lambda: not under(env, keys.LIVE))


def test_a_stop_leaves_a_signal_beside_the_marker_and_the_end_clears_it(env: Env) -> None:
    rid = env.ws.submit(job(env, env.root / "ledger", steps=2000))
    with env.agent_thread():
        env.wait_for(lambda: env.step(rid) >= 2)
        env.ws.repo.request_stop(rid, by="test")
        assert env.ws.store.stat(keys.stop_key(rid)) is not None  # the truth
        assert env.ws.store.stat(keys.stop_signal_key(rid)) is not None  # what agents list
        assert live.scan(env.ws.store)[rid].stop is not None
        assert env.ws.wait(rid, timeout=90).state is RunState.STOPPED
        env.wait_for(lambda: not under(env, keys.LIVE))
    assert env.ws.store.stat(keys.stop_key(rid)) is not None  # resume's rule: unchanged
    assert [r["state"] for r in ps(env)] == ["STOPPED"]
    # A stop of the ended run leaves a signal with no entry: agents clean it, once settled.
    assert env.ws.stop(rid) is RunState.STOPPED
    assert set(live.scan(env.ws.store)) == {rid}
    with env.agent_thread():
        age(env, keys.stop_signal_key(rid), 2 * live.SETTLE)
        env.wait_for(lambda: not under(env, keys.LIVE))


def test_a_damaged_run_leaves_live_and_is_listed_as_damaged(env: Env) -> None:
    rid = env.ws.submit(job(env, env.root / "ledger", steps=2000))
    with env.agent_thread():
        env.wait_for(lambda: env.step(rid) >= 2)
        record = env.ws.store.root / keys.run_key(rid)  # type: ignore[attr-defined]
        record.write_bytes(b'{"run_id": "' + rid.encode())
        env.wait_for(lambda: env.ws.store.stat(keys.damaged_key(rid)) is not None)
        env.wait_for(lambda: not under(env, keys.LIVE))
    assert under(env, keys.ENDED) == {keys.ended_key(rid)}
    rows = ps(env)
    assert [(r["run_id"], r["state"]) for r in rows] == [(rid, "DAMAGED")]


def test_an_agent_killed_between_the_end_and_the_cleanup_leaves_nothing_lost(
    env: Env,
) -> None:
    rid = env.ws.submit(job(env, env.root / "ledger", steps=3, step_time=0.01))
    a = env.start_agent(faults="exit@before-live-cleanup")
    assert a.wait(timeout=90) == 137
    run = env.ws.repo.get_run(rid)
    assert run.state is RunState.SUCCEEDED and run.ended_event
    assert env.ws.store.stat(keys.live_key(rid)) is not None  # the cleanup never ran
    assert [r["state"] for r in ps(env)] == ["SUCCEEDED"]  # listed all the same
    # A new agent does not touch an entry that may be a resume in progress…
    env.start_agent()
    env.wait_for(lambda: bool(under(env, "agents/")))
    time.sleep(2.0)  # a few adoption scans
    assert env.ws.store.stat(keys.live_key(rid)) is not None
    # …and cleans it once it is settled.
    for key in under(env, keys.live_prefix(rid)):
        age(env, key, 2 * live.SETTLE)
    env.wait_for(lambda: not under(env, keys.LIVE))
    assert under(env, keys.ENDED) == {keys.ended_key(rid)}


def test_a_resume_racing_a_frozen_cleanup_is_never_undone(env: Env) -> None:
    """The agent freezes between the ended mark and the cleanup; the run is resumed
    meanwhile (its entry rewritten) and another agent starts the new life. When the
    first one wakes, its cleanup (by the generation it saw before the mark) leaves the
    new life's entry and heartbeat alone: the new attempt runs on to its end, unfenced."""
    rid = env.ws.submit(job(env, env.root / "ledger", steps=100, step_time=0.05))
    a = env.start_agent(faults="pause@before-live-cleanup")
    env.wait_for(lambda: is_stopped(a.pid), timeout=120)
    assert env.ws.repo.get_run(rid).ended_event
    env.ws.resume(rid, from_scratch=True)
    env.start_agent()
    env.wait_for(lambda: env.ws.repo.get_run(rid).attempt == 2 and env.step(rid) >= 2)
    assert env.ws.store.stat(keys.ended_key(rid)) is None
    a.send_signal(signal.SIGCONT)
    # The woken agent's cleanup writes ended/<id> first, then fails its delete.
    env.wait_for(lambda: env.ws.store.stat(keys.ended_key(rid)) is not None)
    assert not env.ws.repo.get_run(rid).state.terminal, "the new life ended too soon"
    assert env.ws.store.stat(keys.live_key(rid)) is not None
    assert env.ws.store.stat(keys.heartbeat_key(rid)) is not None
    assert env.ws.wait(rid, timeout=120).state is RunState.SUCCEEDED, env.diagnose()
    assert env.ws.repo.get_run(rid).attempt == 2  # never fenced, never recovered
    env.wait_for(lambda: not under(env, keys.LIVE))


def test_an_enqueuer_dying_after_the_entry_leaves_nothing_broken(env: Env) -> None:
    path = job(env, env.root / "ledger", steps=3)
    other = env.ws.submit(job(env, env.root / "ledger", name="other", steps=3))
    with env.agent_thread():  # the store gets its index
        assert env.ws.wait(other, timeout=60).state is RunState.SUCCEEDED
    cli = [sys.executable, "-m", "relaunch.cli.main", "run", str(path), "--detach"]
    died = subprocess.run(
        [*cli, "--store", env.ws.store.url],
        cwd=env.root,
        env={**os.environ, "RELAUNCH_FAULTS": "exit@enqueue-after-live-entry"},
        capture_output=True,
        text=True,
    )
    assert died.returncode == 137, died.stderr
    (rid,) = live.live_ids(env.ws.store)
    assert env.ws.store.stat(keys.run_key(rid)) is None
    # An entry without a record is nothing to list, with or without --all.
    assert [r["run_id"] for r in ps(env)] == [other]
    assert [r["run_id"] for r in ps(env, "--all")] == [other]
    with env.agent_thread() as agent:
        env.wait_for(lambda: env.ws.store.stat(keys.agent_key(agent.id)) is not None)
        time.sleep(2.0)  # a few adoption scans
        assert env.ws.store.stat(keys.live_key(rid)) is not None  # too young to prune
        age(env, keys.live_key(rid), 2 * live.SETTLE)
        env.wait_for(lambda: env.ws.store.stat(keys.live_key(rid)) is None)
    assert not under(env, keys.LIVE)


def old_store(env: Env) -> None:
    """What an older relaunch left: no index, no entries (records and heartbeats kept)."""
    root: Path = env.ws.store.root  # type: ignore[attr-defined]
    for folder in (keys.ENDED,):
        shutil.rmtree(root / folder, ignore_errors=True)
    for key in under(env, keys.LIVE):
        if key.endswith("/run"):
            env.ws.store.delete(key)
    env.ws.store.delete(keys.INDEX_KEY)


def test_a_store_without_the_index_is_indexed_by_the_first_agent(env: Env) -> None:
    path = env.root / "ledger"
    done = env.ws.submit(job(env, path, name="done", steps=3))
    with env.agent_thread():
        assert env.ws.wait(done, timeout=60).state is RunState.SUCCEEDED
    running = env.ws.submit(job(env, path, name="running", steps=60, step_time=0.05))
    waiting = env.ws.submit(job(env, path, name="waiting", steps=3, queue="later"))
    a = env.start_agent()
    env.wait_for(lambda: env.step(running) >= 3)
    a.kill()  # its run goes on without an agent
    a.wait(timeout=30)
    old_store(env)
    assert not live.index_ready(env.ws.store)
    before = {r["run_id"]: r["state"] for r in ps(env)}  # the old way: every record
    assert before == {done: "SUCCEEDED", running: "RUNNING", waiting: "QUEUED"}

    env.start_agent("--queue", "default")
    env.wait_for(lambda: live.index_ready(env.ws.store))
    assert {running, waiting} <= set(live.live_ids(env.ws.store))
    assert done not in live.live_ids(env.ws.store)
    assert under(env, keys.ENDED) == {keys.ended_key(done)}
    # The run that was live before the migration is adopted and finishes.
    assert env.ws.wait(running, timeout=120).state is RunState.SUCCEEDED, env.diagnose()
    assert "adopted" in [e.kind for e in env.ws.repo.events(running)]
    after = {r["run_id"]: r["state"] for r in ps(env)}
    assert after == {done: "SUCCEEDED", running: "SUCCEEDED", waiting: "QUEUED"}


def test_a_fresh_agent_and_ps_read_no_record_of_old_runs(env: Env) -> None:
    """200 runs that ended long ago, 2 live ones: neither a new agent's adoption scan nor
    `ps`'s default view reads a record of an old run; `ps --all` still lists them all."""
    store = env.ws.store
    path = env.root / "ledger"
    ended = env.ws.submit(job(env, path, name="ended", steps=2))
    with env.agent_thread():
        assert env.ws.wait(ended, timeout=60).state is RunState.SUCCEEDED
    template = json.loads(store.get(keys.run_key(ended))[0])
    long_ago = time.time() - 3 * 86400
    old = [f"old-{i:03d}" for i in range(200)]
    for run_id in old:
        record = {**template, "run_id": run_id, "created_at": long_ago, "ended_at": long_ago}
        store.put(keys.run_key(run_id), json.dumps(record).encode())
    age(env, keys.ended_key(ended), 2 * live.ENDED_FOR)  # `ended` ended long ago too
    live_ids = [env.ws.submit(job(env, path, name=f"q{i}", steps=3, queue="idle")) for i in (1, 2)]

    counting = Counting(store)
    options = AgentOptions(queues=["idle"])
    agent = Agent(counting, options, log=lambda _m: None)  # type: ignore[arg-type]
    agent._adopt()
    read = {k.split("/")[1] for k in counting.gets if k.startswith("runs/")}
    assert read <= set(live_ids), sorted(read)[:5]
    assert store.stat(keys.ended_key(ended)) is None  # pruned: older than a day

    from relaunch.runs.summary import run_summaries

    counting.gets.clear()
    recent = run_summaries(counting, recent=live.ENDED_FOR)  # type: ignore[arg-type]
    assert {r.run_id for r in recent} == set(live_ids)
    assert {k.split("/")[1] for k in counting.gets} <= set(live_ids)
    everything = {r["run_id"] for r in ps(env, "--all")}
    assert everything == {*old, ended, *live_ids}


def test_the_cleanup_deletes_only_what_it_saw(tmp_path: Path) -> None:
    """live.ended against a resume that rewrote the entry: the entry, the heartbeat and
    the stop signal of the new life all stay."""
    store = LocalStore(tmp_path / "s")
    rid = "r-1"
    before = live.add(store, rid, queue="q", backend="local", created_at=1.0)
    time.sleep(0.01)
    live.add(store, rid, queue="q", backend="local", created_at=1.0)  # the resume
    store.put(keys.heartbeat_key(rid), b"{}")
    store.put(keys.stop_signal_key(rid), b"{}")
    live.ended(store, rid, ended_at=time.time(), entry_generation=before)
    assert set(live.scan(store)) == {rid}
    found = live.scan(store)[rid]
    assert found.entry and found.heartbeat and found.stop
    # Without a resume, the same call takes the run out of live/.
    now = store.stat(keys.live_key(rid))
    assert now is not None
    live.ended(store, rid, ended_at=time.time(), entry_generation=now.generation)
    assert live.scan(store) == {} and live.ended_ids(store) == [rid]


def test_runs_a_live_agent_owns_cost_another_agent_no_read(env: Env) -> None:
    """Agent A owns three running runs; agent B's adoption scan learns that from A's
    record and reads neither their records nor their leases — until A is gone."""
    path = env.root / "ledger"
    rids = [env.ws.submit(job(env, path, name=f"r{i}", steps=2000)) for i in range(3)]
    with env.agent_thread() as a:
        env.wait_for(lambda: all(env.step(r) >= 1 for r in rids))
        env.wait_for(lambda: set(rids) <= set(json.loads(
            env.ws.store.get(keys.agent_key(a.id))[0])["runs"]))  # fmt: skip
        counting = Counting(env.ws.store)
        b = Agent(counting, AgentOptions(), log=lambda _m: None)  # type: ignore[arg-type]
        b._adopt()
        assert not [k for k in counting.gets if k.startswith("runs/")], counting.gets
        assert not b.owned
    env.ws.store.put(  # A is gone: its record has expired (as if it died)
        keys.agent_key(a.id), json.dumps({"id": a.id, "expires_at": 0, "runs": rids}).encode()
    )
    counting.gets.clear()
    b._adopt()
    assert {keys.lease_key(r) for r in rids} <= set(counting.gets)
    assert set(b.owned) == set(rids)  # A let its leases go on its way out: adopted at once
    b.shutdown()
