"""GCE spot-VM runs end to end against the fake cloud: the agent, the backend through
the official compute_v1 client, the VM's real start-up script (COS tools stood in for),
and the runtime inside the "container" on the GCS store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaunch.states import Reason, RunState
from tests.e2e.gce_env import IMAGE, GceEnv
from tests.e2e.vertex_env import STORE
from tests.fakegcp.cos import recorded
from tests.fakegcp.fake import FakeGCP

pytest_plugins = ["tests.fakegcp.fixtures"]


@pytest.fixture
def cloud(fake_gcp: FakeGCP, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GceEnv]:
    monkeypatch.setenv("RELAUNCH_GCE_POLL_INTERVAL", "0.2")
    monkeypatch.delenv("RELAUNCH_STORE", raising=False)
    fake_gcp.notice = 3.0
    from relaunch.backends import registry

    registry._instances.pop("gce", None)  # read the poll interval above
    env = GceEnv(tmp_path, fake_gcp)
    yield env
    env.cleanup()
    registry._instances.pop("gce", None)


def boot_phases(cloud: GceEnv, rid: str) -> list[str]:
    return [e.data.get("phase", "") for e in cloud.ws.repo.events(rid) if e.kind == "boot"]


def test_a_gpu_job_boots_through_its_phases_and_succeeds(cloud: GceEnv) -> None:
    rid = cloud.ws.submit(cloud.job(steps=20))
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.run(rid).state.terminal, timeout=90)
    run = cloud.run(rid)
    assert run.state is RunState.SUCCEEDED, run.detail
    assert run.step == 20
    assert boot_phases(cloud, rid)[:4] == [
        "driver-installing",
        "driver-ready",
        "image-pulling",
        "container-starting",
    ]
    vm = f"{rid}-1"
    state = cloud.fake.compute.state_dir(vm)
    assert recorded(state, "cos-extensions") == [["install", "gpu"]]
    assert recorded(state, "docker-credential-gcr") == [
        ["configure-docker", "--registries=us-central1-docker.pkg.dev"]
    ]
    (run_args,) = cloud.docker_runs(vm)
    joined = " ".join(run_args)
    # The COS way to reach the GPU (seeds' note E), never --gpus / --runtime=nvidia.
    assert "--volume /var/lib/nvidia/lib64:/usr/local/nvidia/lib64" in joined
    assert "--volume /var/lib/nvidia/bin:/usr/local/nvidia/bin" in joined
    assert "--device /dev/nvidia0" in joined and "--device /dev/nvidiactl" in joined
    assert "LD_LIBRARY_PATH=/usr/local/nvidia/lib64" in run_args
    assert "--gpus" not in joined and "--runtime" not in joined
    assert IMAGE in run_args
    assert run_args[run_args.index(IMAGE) + 1 : run_args.index(IMAGE) + 3] == [
        "relaunch-runtime",
        "--",
    ]
    # The VM powered off when the container was done, and relaunch deleted it.
    cloud.wait_for(lambda: not cloud.fake.compute.vms, timeout=30)
    assert len(cloud.inserts()) == 1


def test_a_spot_vm_preempted_twice_finishes_with_no_committed_step_lost(cloud: GceEnv) -> None:
    rid = cloud.ws.submit(cloud.job(steps=100, step_time=0.05))
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.step(rid) >= 12, timeout=90)
        cloud.fake.compute.preempt(f"{rid}-1")
        cloud.wait_for(lambda: cloud.vm_name(rid, 2) and cloud.step(rid) >= 40, timeout=90)
        cloud.fake.compute.preempt(f"{rid}-2")
        cloud.wait_for(lambda: cloud.run(rid).state.terminal, timeout=120)
    run = cloud.run(rid)
    assert run.state is RunState.SUCCEEDED, run.detail
    assert run.step == 100 and run.recoveries == 2
    first, second, third = cloud.attempts(rid)
    for ended in (first, second):
        assert ended.reason is Reason.PREEMPTED, ended.detail
    # The runtime heard instance/preempted, the trainer checkpointed, the next VM resumed
    # exactly there.
    assert second.first_step == first.last_step and third.first_step == second.last_step
    assert len(cloud.inserts()) == 3


def test_the_runtime_hears_the_notice_on_the_metadata_server(cloud: GceEnv) -> None:
    """The trainer gets SIGTERM from the runtime's instance/preempted watch even when
    Google's own shutdown has not reached the container yet."""
    cloud.fake.notice = 20.0
    rid = cloud.ws.submit(cloud.job(steps=300, step_time=0.05))
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.step(rid) >= 5, timeout=90)
        vm = cloud.fake.compute.vm(f"{rid}-1")
        vm.metadata.preempt()  # the notice alone: no SIGTERM from the fake
        cloud.wait_for(lambda: b"SIGTERM received" in cloud.ws.logs(rid), timeout=30)


def test_stockout_in_zone_b_runs_in_zone_c(cloud: GceEnv) -> None:
    cloud.fake.faults.stockout(zone="us-central1-b")
    rid = cloud.ws.submit(
        cloud.job(
            resources={"machine_type": "n1-standard-4", "zones": ["us-central1-b", "us-central1-c"]}
        )
    )
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.run(rid).state.terminal, timeout=90)
    run = cloud.run(rid)
    assert run.state is RunState.SUCCEEDED, run.detail
    first, second = cloud.attempts(rid)
    assert first.reason is Reason.NO_CAPACITY
    assert "ZONE_RESOURCE_POOL_EXHAUSTED" in (first.detail or "")
    assert second.placement["zone"] == "us-central1-c"
    blocked = cloud.events(rid, "placement-blocked")
    assert blocked and "us-central1-b" in blocked[0]


@pytest.mark.parametrize("sync", [True, False])
def test_quota_in_a_region_moves_to_the_next_region(cloud: GceEnv, sync: bool) -> None:
    cloud.fake.faults.quota("us-central1", sync=sync)
    resources = {"machine_type": "n1-standard-4", "regions": ["us-central1", "us-east1"]}
    rid = cloud.ws.submit(cloud.job(resources=resources))
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.run(rid).state.terminal, timeout=90)
    run = cloud.run(rid)
    assert run.state is RunState.SUCCEEDED, run.detail
    first, second = cloud.attempts(rid)
    assert first.reason is Reason.QUOTA
    assert ("quotaExceeded" if sync else "QUOTA_EXCEEDED") in (first.detail or "") or (
        "Quota" in (first.detail or "")
    )
    # Every zone of the quota'd region is skipped: the next attempt is in us-east1.
    assert second.placement["zone"] == "us-east1-b"
    blocked = cloud.events(rid, "placement-blocked")
    assert len(blocked) == 4 and all("us-central1-" in b for b in blocked)


def test_a_driver_that_never_gets_ready_is_classified_and_the_next_zone_tried(
    cloud: GceEnv,
) -> None:
    cloud.fake.compute.cos.driver_in["us-central1-a"] = "never"
    rid = cloud.ws.submit(cloud.job(gce={"gpu_timeout": 5}, retry={"max_restarts_on_errors": 1}))
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.run(rid).state.terminal, timeout=90)
    first, second = cloud.attempts(rid)
    assert first.reason is Reason.STARTUP_TIMEOUT
    assert "GPU driver was not ready 5s after cos-extensions install gpu" in (first.detail or "")
    assert "raise gce.gpu_timeout" in (first.detail or "")
    assert second.placement["zone"] == "us-central1-b"
    assert cloud.run(rid).state is RunState.SUCCEEDED, (second.reason, second.detail)
    assert "driver-installing" in boot_phases(cloud, rid)


def test_no_gpu_detected_is_said_so(cloud: GceEnv) -> None:
    cloud.fake.compute.cos.gpus = 0
    rid = cloud.ws.submit(
        cloud.job(
            gce={"gpu_timeout": 5},
            resources={
                "machine_type": "n1-standard-4",
                "accelerator_type": "NVIDIA_TESLA_T4",
                "accelerator_count": 1,
                "zones": ["us-central1-a"],
            },
        )
    )
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.attempts(rid) and cloud.attempts(rid)[0].reason, timeout=90)
    first = cloud.attempts(rid)[0]
    assert first.reason is Reason.STARTUP_TIMEOUT
    assert "no GPU detected" in (first.detail or "")
    # The start-up script's last word, a heartbeat saying the container never started,
    # is written where the runtime's heartbeats go: under live/.
    said = [r for r in cloud.fake.router.requests if b'"phase": "not-started"' in r]
    assert said and all(f"live/{rid}/heartbeat.json".encode() in r for r in said)


def test_image_pull_denied_names_the_role_to_grant(cloud: GceEnv) -> None:
    cloud.fake.faults.image_pull(IMAGE)
    rid = cloud.ws.submit(cloud.job())
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.run(rid).state.terminal, timeout=90)
    run = cloud.run(rid)
    assert run.state is RunState.FAILED and run.reason is Reason.IMAGE_PULL
    assert "roles/artifactregistry.reader" in (run.detail or "")
    assert "123456789-compute@developer.gserviceaccount.com" in (run.detail or "")
    assert not cloud.docker_runs(f"{rid}-1")  # nothing ran
    assert len(cloud.inserts()) == 1


def test_container_exit_125_is_explained(cloud: GceEnv) -> None:
    cloud.fake.compute.cos.run_exit = 125
    rid = cloud.ws.submit(cloud.job())
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.run(rid).state.terminal, timeout=90)
    run = cloud.run(rid)
    assert run.state is RunState.FAILED and run.reason is Reason.USER_ERROR
    assert "exit 125" in (run.detail or "") and "GPU runtime" in (run.detail or "")


def test_a_vm_deleted_outside_relaunch_ends_the_run_stopped(cloud: GceEnv) -> None:
    rid = cloud.ws.submit(cloud.job(steps=400, step_time=0.05))
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.step(rid) >= 3, timeout=90)
        from relaunch.gcp.clients import compute_instances_client

        compute_instances_client().delete(
            project="fake-project", zone="us-central1-a", instance=f"{rid}-1"
        )
        cloud.wait_for(lambda: cloud.run(rid).state.terminal, timeout=60)
    run = cloud.run(rid)
    assert run.state is RunState.STOPPED and run.attempt == 1
    assert "deleted outside relaunch" in (run.detail or "")
    assert len(cloud.inserts()) == 1


def test_stop_writes_stop_then_deletes_the_vm(cloud: GceEnv) -> None:
    rid = cloud.ws.submit(cloud.job(steps=400, step_time=0.05))
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.step(rid) >= 3, timeout=90)
        cloud.ws.stop(rid)
        cloud.wait_for(lambda: cloud.run(rid).state.terminal, timeout=60)
    assert cloud.run(rid).state is RunState.STOPPED
    assert cloud.ws.repo.stop_requested(rid)
    deletes = [r for r in cloud.fake.requests("compute") if r[1] == "DELETE"]
    assert deletes and deletes[0][2].endswith(f"/instances/{rid}-1")
    cloud.wait_for(lambda: not cloud.fake.compute.vms, timeout=30)


def test_agent_killed_while_the_vm_runs_is_adopted_one_vm(cloud: GceEnv) -> None:
    rid = cloud.ws.submit(cloud.job(steps=120, step_time=0.05))
    env = {**os.environ, "RELAUNCH_STORE": STORE}
    argv = [sys.executable, "-m", "relaunch.cli.main", "agent", "--poll", "0.1", "--lease-ttl", "2"]

    def agent() -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    first = agent()
    try:
        cloud.wait_for(lambda: cloud.step(rid) >= 10, timeout=90)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        second = agent()
        try:
            cloud.wait_for(lambda: cloud.run(rid).state.terminal, timeout=120)
        finally:
            second.kill()
            second.wait(timeout=10)
    finally:
        first.kill()
    run = cloud.run(rid)
    assert run.state is RunState.SUCCEEDED and run.attempt == 1, run.detail
    assert cloud.events(rid, "adopted")
    assert len(cloud.inserts()) == 1  # the new agent never inserted a second VM


def test_a_vm_inserted_by_an_agent_that_died_before_recording_it_is_found(
    cloud: GceEnv,
) -> None:
    from relaunch.backends.base import SubmitContext
    from relaunch.backends.registry import get_backend
    from relaunch.runs.records import AttemptRecord

    rid = cloud.ws.submit(cloud.job(steps=20))
    repo = cloud.ws.repo

    def name_attempt(r: object) -> None:
        r.attempt, r.state = 1, RunState.STARTING  # type: ignore[attr-defined]

    run = repo.update_run(rid, name_attempt)
    placement = {"zone": "us-central1-a", "region": "us-central1"}
    # The intent (a fencing token) is recorded before the backend is asked, as always.
    attempt = AttemptRecord(run_id=rid, n=1, backend="gce", placement=placement, token="f00d")
    repo.put_attempt(attempt, if_generation_match=0)
    ctx = SubmitContext(
        store=cloud.ws.store, command=run.spec.argv, placement=placement, token="f00d"
    )
    created = get_backend("gce").submit(run, attempt, ctx)  # ...and the agent dies here
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.run(rid).state.terminal, timeout=90)
    assert cloud.run(rid).state is RunState.SUCCEEDED
    assert cloud.vm_name(rid, 1) == created["name"]
    assert len(cloud.inserts()) == 1
    assert cloud.events(rid, "attempt-found")


def test_an_insert_whose_answer_was_lost_is_never_doubled(
    cloud: GceEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relaunch.backends.gce import backend

    monkeypatch.setattr(backend, "CREATE_RETRY_DELAYS", (0.05, 0.05, 0.05))
    cloud.fake.faults.fail("compute", method="POST", path=r"/instances$", times=1, after=True)
    rid = cloud.ws.submit(cloud.job(steps=10))
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.run(rid).state.terminal, timeout=90)
    assert cloud.run(rid).state is RunState.SUCCEEDED and cloud.run(rid).attempt == 1
    assert len(cloud.inserts()) == 1  # found by label before inserting again


def test_a_vm_that_outlived_its_attempt_is_deleted_before_the_next(cloud: GceEnv) -> None:
    """An agent died mid-delete: attempt 1's VM still runs when attempt 2 starts."""
    rid = cloud.ws.submit(cloud.job(steps=300, step_time=0.05))
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.step(rid) >= 3, timeout=90)
        from relaunch.backends.registry import get_backend

        gce = get_backend("gce")
        # The VM outlives what relaunch records: the backend says it ended.
        real_poll = gce.poll
        gone = {f"{rid}-1"}

        def poll(handle: dict[str, str]) -> object:
            if handle["name"] in gone:
                from relaunch.backends.base import AttemptStatus
                from relaunch.states import AttemptState

                return AttemptStatus(AttemptState.ENDED, reason=Reason.TRANSIENT, detail="lost")
            return real_poll(handle)

        gce.poll = poll  # type: ignore[method-assign]
        cloud.wait_for(lambda: cloud.vm_name(rid, 2), timeout=60)
        cloud.wait_for(lambda: f"{rid}-1" not in {n for _, n in cloud.fake.compute.vms}, 30)
        cloud.ws.stop(rid)
        cloud.wait_for(lambda: cloud.run(rid).state.terminal, timeout=60)
    deletes = [r[2] for r in cloud.fake.requests("compute") if r[1] == "DELETE"]
    assert any(d.endswith(f"/instances/{rid}-1") for d in deletes)


def test_a_secret_value_is_in_no_request_metadata_serial_output_or_store_object(
    cloud: GceEnv, tmp_path: Path
) -> None:
    secret = "s3cr3t-value-9f8e7d"
    cloud.fake.secrets.add("wandb-api-key", secret.encode())
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os\n"
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
        cloud.wait_for(lambda: cloud.run(rid).state.terminal, timeout=90)
    assert cloud.run(rid).state is RunState.SUCCEEDED, cloud.run(rid).detail
    assert (tmp_path / "seen").read_text() == secret  # it reached the command...
    # ...and nothing else: no request (insert body and its metadata among them), serial
    # output (the start-up script's and the container's), store object or log line.
    assert cloud.fake.router.requests
    assert not [r for r in cloud.fake.router.requests if secret.encode() in r]
    for log in (cloud.fake.root / "logs").glob("*.log"):
        assert secret not in log.read_text()
    for bucket in cloud.fake.gcs.buckets.values():
        for obj in bucket.values():
            assert secret.encode() not in obj.data
    assert secret not in cloud.ws.logs(rid).decode()
