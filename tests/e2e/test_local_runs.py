"""End to end on the local backend and local store: real processes, real signals."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from relaunch.runs import keys, queue
from relaunch.states import REASON_NOTES, Reason, RunState

from .conftest import Env


def test_preempt_resumes_from_checkpoint_without_losing_a_step(env: Env) -> None:
    job = env.job(
        steps=60,
        step_time=0.03,
        every=10,
        local={"preempt": [{"attempt": 1, "at_step": 15, "notice": 5}]},
    )
    rid = env.ws.submit(job)
    run = env.ws.wait(rid, timeout=90)
    assert run.state is RunState.SUCCEEDED, run.detail
    st = env.ws.status(rid)
    first, second = st.attempts
    assert first.reason is Reason.PREEMPTED and second.reason is Reason.SUCCEEDED
    # The trainer saved on SIGTERM; the next attempt started exactly there.
    (term,) = env.markers_of(rid, "term")
    starts = env.markers_of(rid, "start")
    assert [s["step"] for s in starts] == [0, term["step"]]
    assert starts[1]["resumed"] == "1"
    assert term["step"] >= 15
    assert second.first_step == term["step"]
    assert run.step == 60 and run.recoveries == 1
    # Attempts never overlapped.
    assert first.ended_at is not None and second.submitted_at >= first.ended_at - 0.01


def test_preempt_command_simulates_spot_preemption(env: Env) -> None:
    job = env.job(steps=400, step_time=0.02, every=1000)  # checkpoints only on SIGTERM
    rid = env.ws.submit(job)
    with env.agent_thread():
        env.wait_for(lambda: env.ws.repo.get_run(rid).state is RunState.RUNNING)
        env.wait_for(lambda: len(env.markers_of(rid, "start")) == 1)
        # Preempt once the trainer has stepped (its heartbeat says so), not at step 0.
        env.wait_for(lambda: env.step(rid) > 0)
        env.ws.preempt(rid, notice=3)
        env.wait_for(lambda: env.ws.repo.get_run(rid).attempt == 2)
        (term,) = env.markers_of(rid, "term")
        env.wait_for(lambda: len(env.markers_of(rid, "start")) == 2)
        assert env.markers_of(rid, "start")[1]["step"] == term["step"] > 0
        assert env.ws.stop(rid) is RunState.STOPPED


def test_trainer_that_raises_is_user_error_with_last_lines(env: Env) -> None:
    job = env.job(trainer_args=["--raise-at", "4"])
    rid = env.ws.submit(job)
    run = env.ws.wait(rid, timeout=60)
    assert run.state is RunState.FAILED
    assert run.reason is Reason.USER_ERROR
    (attempt,) = env.ws.status(rid).attempts  # not retried by default
    assert attempt.exit_code == 1
    assert "ValueError: boom at step 4" in (attempt.detail or "")
    assert any(line.startswith("Traceback") for line in attempt.last_lines)
    assert attempt.last_lines[-1] == "ValueError: boom at step 4"


def test_user_error_is_retried_when_the_policy_says_so(env: Env) -> None:
    job = env.job(
        trainer_args=["--raise-at", "4"],
        retry={"actions": {"user-error": "retry"}, "max_restarts_on_errors": 2},
    )
    rid = env.ws.submit(job)
    run = env.ws.wait(rid, timeout=60)
    assert run.state is RunState.FAILED and run.restarts == 2
    assert [a.reason for a in env.ws.status(rid).attempts] == [Reason.USER_ERROR] * 3


def test_silent_trainer_is_stalled(env: Env) -> None:
    job = env.job(trainer_args=["--hang-at", "3"], stall_timeout=1.5)
    rid = env.ws.submit(job)
    run = env.ws.wait(rid, timeout=60)
    assert run.state is RunState.FAILED
    assert run.reason is Reason.STALLED
    (attempt,) = env.ws.status(rid).attempts
    assert "reported no progress" in (attempt.detail or "")


def test_no_first_heartbeat_in_time_is_startup_timeout(env: Env) -> None:
    """A start-up slower than startup_timeout (here: the job's Python sleeps 8 s in
    sitecustomize before the runtime can even run) ends the attempt in the first
    phase of the watchdog. (5 s is the shortest startup_timeout `run` accepts.)"""
    slow = env.root / "slow-start"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text("import time\ntime.sleep(8)\n")
    rid = env.ws.submit(env.job(startup_timeout="5s", env={"PYTHONPATH": str(slow)}))
    run = env.ws.wait(rid, timeout=60)
    assert run.state is RunState.FAILED and run.reason is Reason.STARTUP_TIMEOUT
    (attempt,) = env.ws.status(rid).attempts
    assert attempt.running_at is None and "no heartbeat" in (attempt.detail or "")
    assert env.markers_of(rid, "start") == []  # the command never started


def test_stop_ends_the_run_and_it_is_never_recovered(env: Env) -> None:
    job = env.job(steps=10_000, step_time=0.02)
    rid = env.ws.submit(job)
    with env.agent_thread():
        env.wait_for(lambda: env.ws.repo.get_run(rid).state is RunState.RUNNING)
        # RUNNING comes with the runtime's first heartbeat, maybe before the trainer has
        # its SIGTERM handler (a slow start on a loaded machine): wait for the trainer.
        # (its marker's name only: the trainer may be writing the file at that instant)
        env.wait_for(lambda: any(env.markers.glob(f"{rid}.*.start")))
        assert env.ws.stop(rid, wait=30) is RunState.STOPPED
        time.sleep(1.0)  # the agent keeps ticking: nothing may restart the run
        run = env.ws.repo.get_run(rid)
        assert run.state is RunState.STOPPED and run.attempt == 1
        (attempt,) = env.ws.status(rid).attempts
        assert attempt.reason is Reason.STOPPED
        assert len(env.markers_of(rid, "term")) == 1  # the trainer got SIGTERM
        pid = int(attempt.handle["pid"])  # type: ignore[index]
        _assert_group_gone(pid)


def test_a_stop_after_an_attempt_ended_otherwise_says_stopped_not_the_attempts_reason(
    env: Env,
) -> None:
    """The agent that staged a preemption notice died (Ctrl-C of `run --follow`), the
    attempt ended preempted, then `relaunch stop`: the run is STOPPED and its note says
    so — not "a recovery resumes from the last checkpoint", which no one will do."""
    from relaunch.runs.records import PreemptionSim

    rid = env.ws.submit(env.job(steps=10_000, step_time=0.02))
    with env.agent_thread():
        env.wait_for(lambda: any(env.markers.glob(f"{rid}.*.start")))
    found = env.ws.repo.find_attempt(rid, 1)
    assert found is not None
    attempt, gen = found
    now = time.time()
    attempt.preemption = PreemptionSim(requested_at=now, notice=1.0, kill_at=now + 1.0)
    env.ws.repo.put_attempt(attempt, if_generation_match=gen)
    os.killpg(int(attempt.handle["pid"]), signal.SIGKILL)  # type: ignore[index]
    assert env.ws.stop(rid, wait=30) is RunState.STOPPED
    run = env.ws.repo.get_run(rid)
    assert run.reason is Reason.STOPPED and "preempted" in (run.detail or ""), run.detail
    assert env.ws.status(rid).attempts[0].reason is Reason.PREEMPTED  # what it was
    ended = [e.message for e in env.ws.repo.events(rid) if e.kind == "run-ended"]
    assert ended == ["run stopped: " + REASON_NOTES[Reason.STOPPED]]
    assert "relaunch resume RUN" in REASON_NOTES[Reason.STOPPED]


def test_stop_without_any_agent(env: Env) -> None:
    queued = env.ws.submit(env.job("q"))
    assert env.ws.stop(queued) is RunState.STOPPED
    assert queue.items(env.ws.repo.store, "default") == []


def _assert_group_gone(pgid: int) -> None:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return
    raise AssertionError(f"process group {pgid} still alive")


def test_agent_sigkilled_mid_run_is_replaced_without_duplicates(env: Env) -> None:
    runs = [env.ws.submit(env.job(f"r{i}", steps=60, step_time=0.05, every=10)) for i in range(3)]
    first = env.start_agent()
    env.wait_for(lambda: all(env.ws.repo.get_run(r).state is RunState.RUNNING for r in runs))
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    env.start_agent()
    for rid in runs:
        env.wait_for(lambda rid=rid: env.ws.repo.get_run(rid).state.terminal, timeout=90)
        run = env.ws.repo.get_run(rid)
        assert run.state is RunState.SUCCEEDED and run.attempt == 1, rid
        assert len(env.markers_of(rid, "start")) == 1  # never a second live attempt
        assert len(env.markers_of(rid, "end")) == 1
        assert any(e.kind == "adopted" for e in env.ws.repo.events(rid))


def test_two_agents_racing_over_20_runs_start_each_once(env: Env) -> None:
    runs = [env.ws.submit(env.job(f"race{i}", steps=3, step_time=0.01)) for i in range(20)]
    agents = [env.start_agent("--max-jobs", "20"), env.start_agent("--max-jobs", "20")]
    for rid in runs:
        env.wait_for(lambda rid=rid: env.ws.repo.get_run(rid).state.terminal, timeout=120)
    for rid in runs:
        run = env.ws.repo.get_run(rid)
        assert run.state is RunState.SUCCEEDED and run.attempt == 1
        assert len(env.markers_of(rid, "start")) == 1
        claims = [e for e in env.ws.repo.events(rid) if e.kind == "claimed"]
        assert len(claims) == 1
    owners = {e.message for rid in runs for e in env.ws.repo.events(rid) if e.kind == "claimed"}
    assert queue.items(env.ws.repo.store, "default") == []
    # Every claim was won by one of the two racing agents (which one is up to the race).
    pids = {f"-{agent.pid}-" for agent in agents}
    assert all(any(pid in owner for pid in pids) for owner in owners), owners


def test_attempt_started_but_unrecorded_is_found_not_resubmitted(env: Env) -> None:
    """An agent that died between starting an attempt and recording its handle: the
    next agent finds the running process instead of starting a second one."""
    from relaunch.backends.base import SubmitContext
    from relaunch.backends.registry import get_backend
    from relaunch.runs.records import AttemptRecord

    rid = env.ws.submit(env.job(steps=40, step_time=0.05))
    repo = env.ws.repo

    def name_attempt(r: object) -> None:
        r.attempt, r.state = 1, RunState.STARTING  # type: ignore[attr-defined]

    run = repo.update_run(rid, name_attempt)
    for key in [m.key for m in repo.store.list("queues/").objects]:
        repo.store.delete(key)
    # The intent (a fencing token) is recorded before the backend is asked, as always.
    attempt = AttemptRecord(run_id=rid, n=1, backend="local", token="f00d")
    repo.put_attempt(attempt, if_generation_match=0)
    backend = get_backend("local")
    ctx = SubmitContext(store=repo.store, command=run.spec.command, token="f00d")
    backend.submit(run, attempt, ctx)
    # ...and the agent "dies" here: the attempt record has no handle.
    assert repo.find_attempt(rid, 1)[0].handle is None  # type: ignore[index]
    assert repo.store.stat(keys.lease_key(rid)) is None
    run_final = env.ws.wait(rid, timeout=60)
    assert run_final.state is RunState.SUCCEEDED and run_final.attempt == 1
    assert len(env.markers_of(rid, "start")) == 1
    assert any(e.kind == "attempt-found" for e in repo.events(rid))


def test_a_command_that_cannot_start_fails_once_saying_why(env: Env) -> None:
    """The runtime cannot start the command (a missing secret, a program removed after
    the run was queued — `run` refuses one missing then): the attempt ends user-error
    with the reason — never a 'vanished' attempt retried."""
    missing_secret = env.job("nosecret", env_from_secret={"TOKEN": "env:RELAUNCH_TEST_NOPE"})
    program = env.root / "gone.sh"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    missing_program = env.root / "noprog.yaml"
    missing_program.write_text("name: noprog\ncommand: [./gone.sh]\n")
    rids = [env.ws.submit(missing_secret), env.ws.submit(missing_program)]
    program.unlink()
    with env.agent_thread():
        for rid in rids:
            env.wait_for(lambda rid=rid: env.ws.repo.get_run(rid).state.terminal)
    for rid, words in zip(rids, ["RELAUNCH_TEST_NOPE is not set", "./gone.sh"], strict=True):
        run = env.ws.repo.get_run(rid)
        assert run.state is RunState.FAILED and run.attempt == 1, run.detail
        assert run.reason is Reason.USER_ERROR and words in (run.detail or "")
        assert words in env.ws.logs(rid).decode()
        assert not [e for e in env.ws.repo.events(rid) if e.kind == "attempt-running"]
        # The note (ps, the run-ended event) says what is missing, not "fix the code".
        assert run.note == f"the command did not start: {run.detail}"
        ended = [e.message for e in env.ws.repo.events(rid) if e.kind == "run-ended"]
        assert ended == [f"run failed: {run.note} (policy: user-error → fail)"], ended
    secret = env.ws.repo.get_run(rids[0])
    assert "export RELAUNCH_TEST_NOPE in the agent's environment" in (secret.note or "")


def test_a_secret_the_trainer_prints_is_masked_everywhere(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "tok-5b1f0c9a77"
    monkeypatch.setenv("RELAUNCH_TEST_TOKEN", secret)
    job = env.root / "leak.yaml"
    job.write_text(
        'name: leak\ncommand: [python, -c, \'import os; print("key:", os.environ["TOKEN"]); '
        "raise SystemExit(3)']\nenv_from_secret: {TOKEN: 'env:RELAUNCH_TEST_TOKEN'}\n"
    )
    rid = env.ws.submit(job)
    with env.agent_thread():
        env.wait_for(lambda: env.ws.repo.get_run(rid).state.terminal)
    assert "key: [secret]" in env.ws.logs(rid).decode()
    for meta in env.ws.store.list("").objects:
        assert secret.encode() not in env.ws.store.get(meta.key)[0], meta.key


def test_a_damaged_run_record_hides_no_other_run(env: Env) -> None:
    rid = env.ws.submit(env.job("fine"))
    store = env.ws.store
    store.put("runs/evil/run.json", store.get(keys.run_key(rid))[0].replace(
        rid.encode(), b"../../tmp/victim"))  # fmt: skip
    store.put("runs/garbled/run.json", b"{not json")
    store.put("runs/NOT_AN_ID/run.json", b"{}")
    # Listed, as DAMAGED with why; never read as runs.
    listed = {s.run_id: (s.state, s.note) for s in env.ws.summaries()}
    assert listed.keys() == {rid, "evil", "garbled"}
    assert listed["evil"][0] == listed["garbled"][0] == "DAMAGED"
    assert "names another run" in str(listed["evil"][1])
    assert "not valid JSON" in str(listed["garbled"][1]) or "damaged" in str(listed["garbled"][1])
    assert [r.run_id for r in env.ws.repo.runs()] == [rid]
    with env.agent_thread():  # the agent sets them aside and runs the good one
        env.wait_for(lambda: env.ws.repo.get_run(rid).state.terminal)
    assert env.ws.repo.get_run(rid).state is RunState.SUCCEEDED
    assert env.ws.repo.damaged("garbled") and env.ws.repo.damaged("evil")
    assert not Path("/tmp/victim").exists()


def test_an_agent_with_exit_when_idle_runs_what_is_queued_then_exits(env: Env) -> None:
    rid = env.ws.submit(env.job("once", steps=5, step_time=0.01))
    agent = env.start_agent("--exit-when-idle", "1")
    assert agent.wait(timeout=60) == 0
    assert env.ws.repo.get_run(rid).state is RunState.SUCCEEDED


FIXED_DIR_TRAINER = """
import json, os, signal, sys, time
from pathlib import Path
from relaunch.runtime import report
last = Path("mine/last.json")  # the trainer's own path; it knows nothing of relaunch's
step = json.loads(last.read_text())["step"] if last.exists() else 0
print("start", step, flush=True)
def save(*_):
    last.parent.mkdir(exist_ok=True)
    last.write_text(json.dumps({"step": step}))
    report(step=step, total=60, checkpoint=True)
signal.signal(signal.SIGTERM, lambda *_: (save(), sys.exit(143)))
first_life = step == 0
while step < 60:
    time.sleep(0.03)
    if first_life and step >= 30:
        continue  # waits here to be preempted, however late a loaded machine gets to it
    step += 1
    report(step=step, total=60)
save()
"""


def test_checkpoints_dir_restores_the_trainers_own_folder(env: Env) -> None:
    (env.root / "fixed.py").write_text(FIXED_DIR_TRAINER)
    job = env.root / "fixed.yaml"
    job.write_text(
        "name: fixed\ncommand: [python, fixed.py]\nheartbeat_interval: 0.2\n"
        "checkpoints: {dir: mine, sync_interval: 0}\n"
        "local: {preempt: [{attempt: 1, at_step: 20, notice: 3}]}\n"
    )
    rid = env.ws.submit(job)
    run = env.ws.wait(rid, timeout=60)
    assert run.state is RunState.SUCCEEDED and run.attempt == 2 and run.step == 60
    second = env.ws.status(rid).attempts[1]
    assert second.first_step and second.first_step >= 20  # resumed, not from 0
    # committed from the trainer's own folder (the restore into a fresh machine's
    # folder is proven on Vertex, where each job has its own working directory)
    committed = [m.key for m in env.ws.store.list(f"runs/{rid}/checkpoints/").objects]
    assert any(k.endswith("/last.json") for k in committed), committed
