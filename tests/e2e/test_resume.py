"""`relaunch resume`: an ended run queued again under its id, continuing from its last
committed checkpoint — with real trainers, agents and CLI processes on a local store.

Trainers leave a marker per start (with the step they began at, RELAUNCH_RESUMED and
WANDB_RUN_ID) and a ledger line per step (pid and time), so a test sees where each
attempt started and that no two trainers of the run ever overlapped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from relaunch.errors import NotFoundError, UserInputError
from relaunch.runs import keys, leases, queue
from relaunch.states import Reason, RunState
from tests.e2e.conftest import TRAINER, Env
from tests.e2e.test_guarantee import assert_one_trainer_at_a_time, is_stopped, ledger


def cli(env: Env, *args: str, faults: str | None = None) -> subprocess.Popen[str]:
    extra = {"RELAUNCH_FAULTS": faults} if faults else {}
    return subprocess.Popen(
        [sys.executable, "-m", "relaunch.cli.main", *args, "--store", env.ws.store.url],
        cwd=env.root, env={**os.environ, **extra}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def relaunch(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    proc = cli(env, *args)
    out, err = proc.communicate(timeout=180)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def templated_job(env: Env, name: str = "t", *, steps: int = 20, **spec: Any) -> Path:
    """A job whose step count is a template: `--set steps=N` changes it."""
    command = [
        "python", str(TRAINER), "--steps", "{{steps}}", "--step-time", "0.02",
        "--every", "5", "--markers", str(env.markers), "--ledger", str(env.root / "ledger"),
    ]  # fmt: skip
    doc = {
        "name": name,
        "templates": {
            "steps": {"type": "integer", "minimum": 1, "maximum": 1000, "default": steps}
        },
        "command": command,
        "heartbeat_interval": 0.2,
        "checkpoints": {"sync_interval": 0},
        "grace_period": 5,
        **spec,
    }
    return env.write_job(name, doc)


def starts(env: Env, rid: str) -> dict[int, dict[str, Any]]:
    """The trainers' start markers (RUN.ATTEMPT.start) by attempt number."""
    return {
        int(p.name.split(".")[1]): json.loads(p.read_text())
        for p in env.markers.glob(f"{rid}.*.start")
    }


def start_of(env: Env, rid: str, attempt: int) -> dict[str, Any]:
    return starts(env, rid)[attempt]


def store_snapshot(env: Env) -> dict[str, int]:
    return {m.key: m.generation for m in env.ws.store.list("").objects}


def kinds(env: Env, rid: str) -> list[str]:
    return [e.kind for e in env.ws.repo.events(rid)]


def test_a_failed_run_resumed_with_a_fixed_job_goes_on_from_its_checkpoint(env: Env) -> None:
    path = env.root / "ledger"
    broken = env.job(steps=30, trainer_args=["--raise-at", "13", "--ledger", str(path)])
    rid = env.ws.submit(broken)
    with env.agent_thread():  # one agent throughout: it saw the run end, then claims it again
        failed = env.ws.wait(rid, timeout=120)
        assert failed.state is RunState.FAILED and failed.reason is Reason.USER_ERROR
        fixed = env.job(steps=30, trainer_args=["--ledger", str(path)])  # the code fix
        resumed = env.ws.resume(rid, fixed)
        assert resumed.attempt == 2 and resumed.checkpoint is not None
        assert resumed.checkpoint.step == 10
        run = env.ws.wait(rid, timeout=120)
    assert run.state is RunState.SUCCEEDED, env.diagnose()
    assert run.attempt == 2 and run.step == 30
    assert run.recoveries == 0 and run.resumes == 1 and run.first_attempt == 2
    assert "--raise-at" not in run.spec.argv
    first, second = env.ws.repo.attempts(rid, 2)
    assert first.reason is Reason.USER_ERROR and second.reason is Reason.SUCCEEDED
    assert second.first_step == 10
    # The trainer of attempt 2 restored step 10 and ran 11..30 once; same W&B run.
    assert start_of(env, rid, 1)["wandb"] == start_of(env, rid, 2)["wandb"] == rid
    assert start_of(env, rid, 2)["step"] == 10 and start_of(env, rid, 2)["resumed"] == "1"
    steps = [e["step"] for e in ledger(path)[rid] if e["attempt"] == "2" and e["kind"] == "step"]
    assert steps == list(range(11, 31))
    # The history stays: attempt 1's log and events, then who resumed it and from where.
    assert b"boom at step 13" in env.ws.logs(rid, 1)
    [event] = [e for e in env.ws.repo.events(rid) if e.kind == "resumed"]
    assert "after it failed" in event.message and "step 10" in event.message
    assert event.data["checkpoint"] is not None and event.data["step"] == 10
    happened = kinds(env, rid)
    assert happened.count("run-ended") == 2 and happened.index("resumed") > happened.index(
        "run-ended"
    )


def test_a_succeeded_run_trains_longer_with_set_steps(env: Env) -> None:
    rid = env.ws.submit(templated_job(env, steps=20))
    with env.agent_thread():
        assert env.ws.wait(rid, timeout=120).state is RunState.SUCCEEDED
    # No agent runs now: --follow runs one in its own process, as `relaunch run` does.
    done = relaunch(env, "resume", rid, "--set", "steps=35", "--follow")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "attempt 2 queued" in done.stderr and "step 20" in done.stderr
    run = env.ws.repo.get_run(rid)
    assert run.state is RunState.SUCCEEDED and run.step == 35 and run.attempt == 2
    assert run.template_values == {"steps": "35"}
    assert start_of(env, rid, 2)["step"] == 20
    status = relaunch(env, "status", rid)
    assert "resumed once" in status.stdout
    assert "recovery budget renewed from attempt 2" in status.stdout
    assert_one_trainer_at_a_time(ledger(env.root / "ledger")[rid])


def test_resume_is_refused_while_the_run_lives_or_without_a_checkpoint(env: Env) -> None:
    rid = env.ws.submit(env.job("slow", steps=400, step_time=0.05))
    with env.agent_thread():
        env.wait_for(lambda: env.step(rid) >= 2)
        live = relaunch(env, "resume", rid)
        assert live.returncode == 2 and "Traceback" not in live.stderr
        assert live.stderr.strip() == (
            f"error: run {rid} is RUNNING: it has not ended — "
            f"`relaunch stop {rid}` first, then resume it"
        )
        env.ws.stop(rid)
        # Failed at step 3, before its first checkpoint (every 5 steps): nothing to go on from.
        early = env.ws.submit(env.job(steps=20, trainer_args=["--raise-at", "3"]))
        assert env.ws.wait(early, timeout=120).state is RunState.FAILED
    before = store_snapshot(env)
    refused = relaunch(env, "resume", early)
    assert refused.returncode == 2, refused.stderr
    assert "no committed checkpoint" in refused.stderr
    assert f"relaunch resume {early} --from-scratch" in refused.stderr
    unknown = relaunch(env, "resume", "no-such-run")
    assert unknown.returncode == 2 and "no run 'no-such-run'" in unknown.stderr
    taken = relaunch(env, "run", str(env.job("again")), "--run-id", early)
    assert taken.returncode == 2 and f"relaunch resume {early}" in taken.stderr
    assert store_snapshot(env) == before
    # A new spec that cannot continue the checkpoint is refused the same way, one line.
    rid2 = env.ws.submit(templated_job(env, "tpl", steps=10))
    with env.agent_thread():
        assert env.ws.wait(rid2, timeout=120).state is RunState.SUCCEEDED
    before = store_snapshot(env)
    out_of_range = relaunch(env, "resume", rid2, "--set", "steps=5000")
    assert out_of_range.returncode == 2 and "steps" in out_of_range.stderr
    assert "maximum" in out_of_range.stderr or "1000" in out_of_range.stderr
    moved = templated_job(env, "tpl", steps=10, checkpoints={"dir": "ckpt", "sync_interval": 0})
    other_dir = relaunch(env, "resume", rid2, str(moved))
    assert other_dir.returncode == 2 and "checkpoints.dir" in other_dir.stderr
    assert len(other_dir.stderr.strip().splitlines()) == 1
    moved.unlink()
    gone = relaunch(env, "resume", rid2, "--set", "steps=20")
    assert gone.returncode == 2 and f"{moved} is gone" in gone.stderr
    assert store_snapshot(env) == before  # nothing written by a refusal
    with pytest.raises(UserInputError, match="no committed checkpoint"):
        env.ws.resume(early)
    with pytest.raises(NotFoundError):
        env.ws.resume("no-such-run")


def test_from_scratch_reruns_without_a_checkpoint_and_discards_one(env: Env) -> None:
    early = env.ws.submit(env.job("a", steps=12, trainer_args=["--raise-at", "3"]))
    done = env.ws.submit(env.job("b", steps=12))
    with env.agent_thread():
        assert env.ws.wait(early, timeout=120).state is RunState.FAILED
        assert env.ws.wait(done, timeout=120).state is RunState.SUCCEEDED
        env.ws.resume(early, env.job("a", steps=12), from_scratch=True)
        again = env.ws.resume(done, from_scratch=True)
        assert again.discarded is not None and again.discarded.step == 12
        assert env.ws.wait(early, timeout=120).state is RunState.SUCCEEDED
        assert env.ws.wait(done, timeout=120).state is RunState.SUCCEEDED
    for rid in (early, done):
        second = start_of(env, rid, 2)
        assert second["step"] == 0 and second["resumed"] == "0"
    [event] = [e.message for e in env.ws.repo.events(done) if e.kind == "resumed"]
    assert "from step 0" in event and "step 12 of attempt 1) discarded" in event
    assert env.ws.repo.get_run(done).not_before is None  # the hold was lifted


def stopped_run(env: Env, path: Path) -> str:
    """A run stopped at step >= 10 (its SIGTERM checkpoint committed), agents running."""
    rid = env.ws.submit(env.job(steps=300, step_time=0.05, trainer_args=["--ledger", str(path)]))
    env.start_agent()
    env.wait_for(lambda: env.step(rid) >= 10)
    assert env.ws.stop(rid, wait=120) is RunState.STOPPED
    return rid


@pytest.mark.parametrize(
    ("point", "resume_code"),
    [("resume-before-stop-cleared", 1), ("resume-before-record", 0), ("resume-before-item", 0)],
)
def test_a_stop_racing_a_resume_wins(env: Env, point: str, resume_code: int) -> None:
    """Two processes: the resume frozen between two of its writes, a `relaunch stop` run
    meanwhile. Whichever write the resume had reached, the stop wins and no trainer of
    the new life ever runs."""
    path = env.root / "ledger"
    rid = stopped_run(env, path)
    pids = {e["pid"] for e in ledger(path)[rid]}
    resume = cli(env, "resume", rid, faults=f"pause@{point}")
    env.wait_for(lambda: is_stopped(resume.pid))
    stop = relaunch(env, "stop", rid)
    assert stop.returncode == 0, stop.stderr
    resume.send_signal(signal.SIGCONT)
    _, err = resume.communicate(timeout=120)
    assert resume.returncode == resume_code, err
    if resume_code:
        assert "a stop of run" in err and "requested while resuming" in err
    env.wait_for(lambda: env.ws.repo.get_run(rid).state.terminal)
    env.wait_for(lambda: not queue.items(env.ws.store, "default"))  # no item left behind
    run = env.ws.repo.get_run(rid)
    assert run.state is RunState.STOPPED, env.diagnose()
    assert env.ws.repo.find_attempt(rid, run.attempt + 1) is None
    assert run.attempt == 1 and {e["pid"] for e in ledger(path)[rid]} == pids


def test_a_stop_after_the_resume_wins_and_two_resumes_start_one_attempt(env: Env) -> None:
    path = env.root / "ledger"
    rid = stopped_run(env, path)
    racers = [cli(env, "resume", rid) for _ in range(2)]
    codes = sorted(p.wait(timeout=120) for p in racers)
    assert codes[0] == 0 and codes[1] != 0, [p.stderr.read() for p in racers if p.stderr]
    env.wait_for(lambda: env.ws.repo.get_run(rid).state is RunState.RUNNING)
    env.wait_for(lambda: len(ledger(path)[rid]) > 0 and env.step(rid) >= 12)
    assert env.ws.stop(rid, wait=120) is RunState.STOPPED
    run = env.ws.repo.get_run(rid)
    assert run.attempt == 2 and run.resumes == 1
    assert_one_trainer_at_a_time(ledger(path)[rid])
    started = starts(env, rid)
    assert sorted(started) == [1, 2] and started[2]["step"] >= 10


def test_a_resume_that_dies_before_its_queue_item_is_adopted(env: Env) -> None:
    rid = env.ws.submit(env.job(steps=15))
    with env.agent_thread():
        assert env.ws.wait(rid, timeout=120).state is RunState.SUCCEEDED
    proc = cli(env, "resume", rid, faults="exit@resume-before-item")
    proc.communicate(timeout=120)
    assert proc.returncode == 137
    assert env.ws.repo.get_run(rid).state is RunState.QUEUED
    assert not queue.items(env.ws.store, "default")
    env.start_agent()  # a QUEUED run with neither item nor lease: adopted
    run = env.ws.wait(rid, timeout=120)
    assert run.state is RunState.SUCCEEDED and run.attempt == 2, env.diagnose()
    assert start_of(env, rid, 2)["step"] == 15
    assert env.ws.store.stat(keys.stop_key(rid)) is None


def test_a_run_whose_agent_died_before_saying_it_ended(env: Env) -> None:
    """The agent wrote the end and died before its run-ended event: while its lease lives
    the resume waits for it; once the lease expired the resume writes the event itself,
    so the history of the first life is whole."""
    held = env.ws.submit(env.job("held", steps=10))
    agent = env.start_agent("--lease-ttl", "120", faults="exit@before-run-ended")
    agent.wait(timeout=120)
    assert not env.ws.repo.get_run(held).ended_event
    with pytest.raises(UserInputError, match="still being concluded by agent"):
        env.ws.resume(held, from_scratch=True)
    rid = env.ws.submit(env.job("t", steps=10))
    agent = env.start_agent(faults="exit@before-run-ended")  # a lease of 2 s
    agent.wait(timeout=120)
    env.wait_for(lambda: not env.ws.repo.get_run(rid).ended_event and not _leased(env, rid))
    resumed = env.ws.resume(rid, env.job("t", steps=15))
    assert resumed.checkpoint is not None and resumed.checkpoint.step == 10
    happened = kinds(env, rid)
    assert happened.count("run-ended") == 1 and happened[-1] == "resumed"
    with env.agent_thread():
        run = env.ws.wait(rid, timeout=120)
    assert run.state is RunState.SUCCEEDED and run.step == 15 and run.attempt == 2
    assert kinds(env, rid).count("run-ended") == 2


def _leased(env: Env, rid: str) -> bool:
    lease = leases.read_lease(env.ws.store, rid)
    return lease is not None and lease.expires_at > time.time()


def test_resumes_and_stops_raced_freely_never_run_two_trainers(env: Env) -> None:
    """Rounds of a `relaunch resume` and a `relaunch stop` started together (whichever
    lands first): every round ends with the run ended once the stop is through — a stop
    that came before the resume read the run may let the resume go on, which the next
    round's stop ends — and the ledger never shows two trainers at once."""
    path = env.root / "ledger"
    rid = stopped_run(env, path)
    for _ in range(4):
        resume, stop = cli(env, "resume", rid), cli(env, "stop", rid)
        assert stop.wait(timeout=180) == 0
        assert resume.wait(timeout=180) in (0, 1, 2)
        if not env.ws.repo.get_run(rid).state.terminal:
            assert env.ws.stop(rid, wait=120) is RunState.STOPPED
        env.wait_for(lambda: env.ws.repo.get_run(rid).ended_event)
    run = env.ws.repo.get_run(rid)
    assert run.state is RunState.STOPPED
    assert_one_trainer_at_a_time(ledger(path)[rid])
    attempts = env.ws.repo.attempts(rid, run.attempt)
    assert [a.n for a in attempts] == list(range(1, run.attempt + 1))
    assert all(a.state.value == "ENDED" for a in attempts)


def test_a_run_whose_latest_is_damaged_resumes_from_its_newest_manifest(env: Env) -> None:
    """LATEST cannot be read: the resume names the newest checkpoints/<seq>.json instead,
    which the next attempt's runtime restores as well."""
    rid = env.ws.submit(env.job(steps=12))
    with env.agent_thread():
        assert env.ws.wait(rid, timeout=120).state is RunState.SUCCEEDED
        env.ws.store.put(keys.latest_checkpoint_key(rid), b"{truncated")
        resumed = env.ws.resume(rid, env.job(steps=20))
        assert resumed.checkpoint is not None and resumed.checkpoint.step == 12
        assert env.ws.wait(rid, timeout=120).state is RunState.SUCCEEDED
    assert start_of(env, rid, 2)["step"] == 12 and env.ws.repo.get_run(rid).step == 20
