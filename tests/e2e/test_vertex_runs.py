"""Vertex AI runs end to end against the fake cloud: the agent, the backend through
the official aiplatform_v1 client, the runtime inside the "job" on the GCS store."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaunch.states import Reason, RunState
from tests.e2e.vertex_env import IMAGE, STORE, VertexEnv, vertex_cloud
from tests.fakegcp.fake import FakeGCP

pytest_plugins = ["tests.fakegcp.fixtures"]


@pytest.fixture
def cloud(
    fake_gcp: FakeGCP, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[VertexEnv]:
    fake_gcp.notice = 1.0
    yield from vertex_cloud(fake_gcp, tmp_path, monkeypatch)


def test_spot_job_preempted_twice_finishes_every_step(cloud: VertexEnv) -> None:
    rid = cloud.ws.submit(cloud.job(steps=100, step_time=0.05))
    with cloud.agent_thread():
        # 1st preemption: Vertex fails the job (STOCKOUT after it ran) -> a new CustomJob.
        cloud.wait_for(lambda: cloud.step(rid) >= 12)
        job1 = cloud.job_name(rid, 1)
        assert job1 is not None
        cloud.fake.vertex.preempt(job1)
        cloud.wait_for(lambda: cloud.job_name(rid, 2) and cloud.step(rid) >= 30)
        # 2nd preemption: Vertex restarts the container in place, the job stays RUNNING.
        job2 = cloud.job_name(rid, 2)
        assert job2 is not None
        cloud.fake.vertex.preempt(job2, restart=True)
        cloud.wait_for(lambda: cloud.run(rid).state.terminal, timeout=90)
    run = cloud.run(rid)
    assert run.state is RunState.SUCCEEDED, run.detail
    assert run.step == 100 and run.recoveries == 1
    first, second = cloud.attempts(rid)
    assert first.reason is Reason.PREEMPTED and "STOCKOUT" in (first.detail or "")
    assert second.reason is Reason.SUCCEEDED and second.restarts_in_place == 1
    # No committed step lost: attempt 2 began where attempt 1's SIGTERM checkpoint was,
    # and the in-place restart resumed from a checkpoint past that.
    assert first.last_step and second.first_step == first.last_step
    restarted = cloud.events(rid, "attempt-restarted")
    assert len(restarted) == 1
    resumed = int(restarted[0].rsplit("resumed from step ", 1)[1].rstrip(")"))
    assert resumed >= 30
    assert len(cloud.creates()) == 2  # one CustomJob per attempt, none for the restart


def test_quota_in_the_first_region_runs_in_the_second(cloud: VertexEnv) -> None:
    cloud.fake.faults.quota("us-central1", sync=True)
    rid = cloud.ws.submit(
        cloud.job(
            resources={"machine_type": "n1-standard-4", "regions": ["us-central1", "us-east1"]}
        )
    )
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.run(rid).state.terminal)
    run = cloud.run(rid)
    assert run.state is RunState.SUCCEEDED, run.detail
    first, second = cloud.attempts(rid)
    assert first.reason is Reason.QUOTA and "quota" in (first.detail or "")
    assert first.placement == {"region": "us-central1"} and first.handle is None
    assert second.placement == {"region": "us-east1"} and second.handle
    assert second.handle["name"].startswith("projects/fake-project/locations/us-east1/")


def test_quota_held_in_queued_fails_over_after_the_startup_timeout(cloud: VertexEnv) -> None:
    cloud.fake.faults.quota("us-central1", sync=False)  # Vertex keeps the job QUEUED
    rid = cloud.ws.submit(
        cloud.job(
            # Long enough for the second region's job to start on a loaded machine (its
            # first heartbeat must come within it too); the first is held QUEUED forever.
            startup_timeout=8,
            resources={"machine_type": "n1-standard-4", "regions": ["us-central1", "us-east1"]},
        )
    )
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.run(rid).state.terminal)
    first, second = cloud.attempts(rid)
    assert second.placement == {"region": "us-east1"}
    assert first.reason is Reason.QUOTA and "queued by Vertex" in (first.detail or "")
    assert cloud.fake.vertex.jobs[first.handle["name"]].state == "JOB_STATE_CANCELLED"  # type: ignore[index]
    assert cloud.run(rid).state is RunState.SUCCEEDED


def test_job_cancelled_outside_relaunch_is_not_recovered(cloud: VertexEnv) -> None:
    rid = cloud.ws.submit(cloud.job(steps=400, step_time=0.05))
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.step(rid) >= 3)
        from relaunch.gcp.clients import vertex_job_client

        vertex_job_client("us-central1").cancel_custom_job(name=cloud.job_name(rid, 1))
        cloud.wait_for(lambda: cloud.run(rid).state.terminal)
    run = cloud.run(rid)
    assert run.state is RunState.STOPPED and run.attempt == 1
    assert "cancelled outside relaunch" in (run.detail or "")
    assert len(cloud.creates()) == 1


def test_stop_writes_stop_then_cancels_the_custom_job(cloud: VertexEnv) -> None:
    rid = cloud.ws.submit(cloud.job(steps=400, step_time=0.05))
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.step(rid) >= 3)
        cloud.ws.stop(rid)
        cloud.wait_for(lambda: cloud.run(rid).state.terminal)
    assert cloud.run(rid).state is RunState.STOPPED
    assert cloud.fake.vertex.jobs[cloud.job_name(rid, 1)].state == "JOB_STATE_CANCELLED"  # type: ignore[index]


def test_image_pull_failure_is_classified_with_the_fix(cloud: VertexEnv) -> None:
    cloud.fake.faults.image_pull(IMAGE)
    rid = cloud.ws.submit(cloud.job())
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.run(rid).state.terminal)
    run = cloud.run(rid)
    assert run.state is RunState.FAILED and run.reason is Reason.IMAGE_PULL
    assert "relaunch images list" in (run.note or "")


def test_trainer_error_is_user_error_with_last_lines(cloud: VertexEnv) -> None:
    rid = cloud.ws.submit(cloud.job(trainer_args=["--raise-at", "7"]))
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.run(rid).state.terminal)
    run, (attempt,) = cloud.run(rid), cloud.attempts(rid)
    assert run.state is RunState.FAILED and attempt.reason is Reason.USER_ERROR
    assert any("boom at step 7" in line for line in attempt.last_lines)
    # `relaunch logs --cloud` reads the job's own log from Cloud Logging.
    assert b"boom at step 7" in cloud.ws.logs(rid, cloud=True)


def test_secret_value_never_leaves_secret_manager(cloud: VertexEnv, tmp_path: Path) -> None:
    secret = "s3cr3t-value-9f8e7d"
    cloud.fake.secrets.add("wandb-api-key", secret.encode())
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os, sys\n"
        f"open({str(tmp_path / 'seen')!r}, 'w').write(os.environ['WANDB_API_KEY'])\n"
        "print('key has', len(os.environ['WANDB_API_KEY']), 'chars')\n"
    )
    rid = cloud.ws.submit(
        cloud.job(
            command=["python", str(probe)],
            env_from_secret={"WANDB_API_KEY": "projects/fake-project/secrets/wandb-api-key"},
        )
    )
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.run(rid).state.terminal)
    assert cloud.run(rid).state is RunState.SUCCEEDED
    assert (tmp_path / "seen").read_text() == secret  # it reached the command...
    # ...and nothing else: no request body, stored object, log line or event.
    assert cloud.fake.router.requests
    assert not [r for r in cloud.fake.router.requests if secret.encode() in r]
    job = next(iter(cloud.fake.vertex.jobs.values()))
    assert secret not in json.dumps(job.resource)
    for bucket in cloud.fake.gcs.buckets.values():
        for obj in bucket.values():
            assert secret.encode() not in obj.data
    assert secret not in cloud.ws.logs(rid).decode()


def test_agent_killed_while_the_job_runs_is_adopted_by_label(
    cloud: VertexEnv, tmp_path: Path
) -> None:
    rid = cloud.ws.submit(cloud.job(steps=120, step_time=0.05))
    env = {**os.environ, "RELAUNCH_STORE": STORE}

    def agent() -> subprocess.Popen[bytes]:
        argv = [
            sys.executable,
            "-m",
            "relaunch.cli.main",
            "agent",
            "--poll",
            "0.1",
            "--lease-ttl",
            "2",
        ]
        return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    first = agent()
    try:
        cloud.wait_for(lambda: cloud.step(rid) >= 10)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        second = agent()
        try:
            cloud.wait_for(lambda: cloud.run(rid).state.terminal, timeout=90)
        finally:
            second.kill()
            second.wait(timeout=10)
    finally:
        first.kill()
    run = cloud.run(rid)
    assert run.state is RunState.SUCCEEDED and run.attempt == 1
    assert any("adopted" in m for m in cloud.events(rid, "adopted"))
    assert len(cloud.creates()) == 1  # the new agent never created a second CustomJob


def test_job_created_by_an_agent_that_died_before_recording_it_is_found(
    cloud: VertexEnv,
) -> None:
    """The agent created the CustomJob and died before writing its handle: the next
    agent finds the job by its labels instead of creating a second one."""
    from relaunch.backends.base import SubmitContext
    from relaunch.backends.registry import get_backend
    from relaunch.runs.records import AttemptRecord

    rid = cloud.ws.submit(cloud.job(steps=20))
    repo = cloud.ws.repo

    def name_attempt(r: object) -> None:
        r.attempt, r.state = 1, RunState.STARTING  # type: ignore[attr-defined]

    run = repo.update_run(rid, name_attempt)
    # The intent (a fencing token) is recorded before the backend is asked, as always.
    attempt = AttemptRecord(
        run_id=rid, n=1, backend="vertex", placement={"region": "us-central1"}, token="f00d"
    )
    repo.put_attempt(attempt, if_generation_match=0)
    ctx = SubmitContext(
        store=cloud.ws.store, command=run.spec.argv, placement=attempt.placement, token="f00d"
    )
    created = get_backend("vertex").submit(run, attempt, ctx)  # ...and the agent dies here
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.run(rid).state.terminal)
    assert cloud.run(rid).state is RunState.SUCCEEDED
    assert cloud.job_name(rid, 1) == created["name"]
    assert len(cloud.creates()) == 1
    assert cloud.events(rid, "attempt-found")


@pytest.mark.parametrize("landed", [False, True])
def test_a_create_answered_503_is_retried_and_never_doubled(
    cloud: VertexEnv, monkeypatch: pytest.MonkeyPatch, landed: bool
) -> None:
    """503 on create: retried. If the create had landed and only its answer was lost,
    the retry finds the job by label instead of creating a second one."""
    from relaunch.backends.vertex import backend

    monkeypatch.setattr(backend, "CREATE_RETRY_DELAYS", (0.05, 0.05, 0.05))
    cloud.fake.faults.fail("aiplatform", method="POST", times=1, after=landed)
    rid = cloud.ws.submit(cloud.job(steps=10))
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.run(rid).state.terminal)
    assert cloud.run(rid).state is RunState.SUCCEEDED and cloud.run(rid).attempt == 1
    assert len(cloud.fake.vertex.jobs) == 1
    assert len(cloud.creates()) == (1 if landed else 2)


def test_permission_denied_fails_at_once_naming_the_role(cloud: VertexEnv) -> None:
    cloud.fake.faults.deny("aiplatform", "aiplatform.customJobs.create")
    rid = cloud.ws.submit(cloud.job())
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.run(rid).state.terminal)
    run = cloud.run(rid)
    assert run.state is RunState.FAILED and run.reason is Reason.PERMISSION and run.attempt == 1
    assert "roles/aiplatform.user" in (run.detail or "")


def test_flex_start_job_that_expires_waiting_fails_over(cloud: VertexEnv) -> None:
    cloud.fake.faults.stockout(region="us-central1", times=None)
    rid = cloud.ws.submit(cloud.job(resources={
        "machine_type": "a3-highgpu-8g", "provisioning": "flex-start", "max_wait": "1s",
        "regions": ["us-central1", "us-east1"]}))  # fmt: skip
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.run(rid).state.terminal)
    first, second = cloud.attempts(rid)
    assert first.reason is Reason.NO_CAPACITY and "expired" in (first.detail or "")
    assert second.placement == {"region": "us-east1"}
    assert cloud.run(rid).state is RunState.SUCCEEDED


def test_paused_and_updating_jobs_stay_alive_partial_success_fails(cloud: VertexEnv) -> None:
    rid = cloud.ws.submit(cloud.job(steps=400, step_time=0.05))
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.step(rid) >= 3)
        name = cloud.job_name(rid, 1)
        assert name is not None
        for state in ("JOB_STATE_PAUSED", "JOB_STATE_UPDATING", "JOB_STATE_RUNNING"):
            cloud.fake.vertex.set_state(name, state)
            time.sleep(0.6)  # a few polls
            assert cloud.run(rid).state is RunState.RUNNING
        cloud.fake.vertex.set_state(name, "JOB_STATE_PARTIALLY_SUCCEEDED")
        cloud.wait_for(lambda: cloud.run(rid).state.terminal)
    run = cloud.run(rid)
    assert run.state is RunState.FAILED and run.reason is Reason.USER_ERROR
    assert "partially succeeded" in (run.detail or "")


def test_a_missing_secret_is_named_not_a_bare_exit_status(cloud: VertexEnv) -> None:
    rid = cloud.ws.submit(
        cloud.job(env_from_secret={"HF_TOKEN": "projects/fake-project/secrets/nope"})
    )
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.run(rid).state.terminal)
    run = cloud.run(rid)
    assert run.state is RunState.FAILED and run.reason is Reason.USER_ERROR
    assert "secret projects/fake-project/secrets/nope/versions/latest does not exist" in (
        run.detail or ""
    )


def test_an_image_without_the_runtime_says_what_to_install(cloud: VertexEnv) -> None:
    rid = cloud.ws.submit(cloud.job(vertex={"runtime": ["python", "-c", "import no_runtime_here"]}))
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.run(rid).state.terminal)
    run = cloud.run(rid)
    assert run.state is RunState.FAILED and run.reason is Reason.USER_ERROR
    assert "is relaunch[gcp] installed in the image?" in (run.detail or "")
    assert b"No module named 'no_runtime_here'" in cloud.ws.logs(rid)  # from Cloud Logging


def test_a_region_refused_for_one_run_is_avoided_by_the_next(cloud: VertexEnv) -> None:
    cloud.fake.faults.quota("us-central1", sync=True)
    resources = {"machine_type": "n1-standard-4", "regions": ["us-central1", "us-east1"]}
    first = cloud.ws.submit(cloud.job("first", steps=5, resources=resources))
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.run(first).state.terminal)
        second = cloud.ws.submit(cloud.job("second", steps=5, resources=resources))
        cloud.wait_for(lambda: cloud.run(second).state.terminal)
    assert cloud.run(second).state is RunState.SUCCEEDED and cloud.run(second).attempt == 1
    (attempt,) = cloud.attempts(second)
    assert attempt.placement == {"region": "us-east1"}
    assert cloud.events(second, "placement-skipped")
    central = [c for c in cloud.creates() if "/locations/us-central1/" in c[2]]
    assert len(central) == 1  # only the first run paid for the refusal


def test_checkpoints_dir_is_restored_into_a_new_jobs_folder(cloud: VertexEnv) -> None:
    from tests.e2e.test_local_runs import FIXED_DIR_TRAINER

    trainer = cloud.root / "fixed.py"
    trainer.write_text(FIXED_DIR_TRAINER)
    rid = cloud.ws.submit(
        cloud.job(command=["python", str(trainer)], checkpoints={"dir": "mine", "sync_interval": 0})
    )
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.step(rid) >= 20)
        cloud.fake.vertex.preempt(cloud.job_name(rid, 1) or "")
        cloud.wait_for(lambda: cloud.run(rid).state.terminal)
    run = cloud.run(rid)
    assert run.state is RunState.SUCCEEDED and run.attempt == 2 and run.step == 60
    log = cloud.ws.logs(rid, 2).decode()
    # The first life saved at step 30, where it waited (one commit or two of the same
    # save: the report and the folder's change may each commit it).
    assert re.search(r"restored checkpoint \d+ \(step 30\)\nstart 30\n", log), log


def test_a_crash_restarted_in_place_by_vertex_is_not_run_again(cloud: VertexEnv) -> None:
    cloud.fake.vertex.worker_restarts = 2  # Vertex restarts a worker that exits non-zero
    rid = cloud.ws.submit(cloud.job(trainer_args=["--raise-at", "5"]))
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.run(rid).state.terminal)
    run = cloud.run(rid)
    assert run.state is RunState.FAILED and run.reason is Reason.USER_ERROR
    assert "boom at step 5" in (run.detail or "")
    container_log = cloud.ws.logs(rid, cloud=True).decode()
    assert container_log.count("Traceback") == 1  # the command ran once, not three times
    assert container_log.count("already failed in this attempt") == 2


def test_an_agent_without_the_google_libraries_leaves_vertex_runs_to_one_with_them(
    cloud: VertexEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relaunch.agent.loop import Agent, AgentOptions
    from relaunch.backends import registry
    from relaunch.errors import MissingDependency
    from relaunch.runs import leases, queue

    rid = cloud.ws.submit(cloud.job(steps=5, step_time=0.01))
    lines: list[str] = []
    monkeypatch.setitem(
        registry._missing, "vertex", MissingDependency("no google", hint="install it")
    )
    bare = Agent(cloud.ws.store, AgentOptions(poll=0.1, queues=["default"]), log=lines.append)
    for _ in range(3):
        bare.tick()
    assert lines == [f"{rid}: left for another agent: backend vertex: no google — install it"]
    assert not bare.owned and leases.read_lease(cloud.ws.store, rid) is None
    assert queue.items(cloud.ws.store, "default")  # still queued for an agent that can
    assert cloud.run(rid).state is RunState.QUEUED
    monkeypatch.delitem(registry._missing, "vertex")
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.run(rid).state.terminal)
    assert cloud.run(rid).state is RunState.SUCCEEDED
