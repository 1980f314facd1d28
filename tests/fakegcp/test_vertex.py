"""Vertex AI CustomJobs through the official aiplatform_v1 client, against the fake."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest
import requests
from google.api_core import exceptions as gexc
from google.cloud import aiplatform_v1 as ai
from google.protobuf import duration_pb2

from relaunch.gcp.clients import vertex_job_client
from relaunch.gcp.errors import classify_exception, classify_rpc_status
from relaunch.states import Reason
from tests.fakegcp.fake import FakeGCP
from tests.fakegcp.fixtures import wait_until

S = ai.JobState
PARENT = "projects/fake-project/locations/us-central1"

# Writes "started" to the fake bucket, then on SIGTERM writes "sigterm" and hangs
# (so only SIGKILL after the notice period ends it), else exits with argv[1].
SCRIPT = """
import signal, sys, time
from relaunch.store import open_store
store = open_store("gs://jobs/out")
def on_term(*_):
    store.put("sigterm", b"1")
    time.sleep(60)
signal.signal(signal.SIGTERM, on_term)
store.put("started", sys.argv[1].encode())
time.sleep(float(sys.argv[2]))
sys.exit(int(sys.argv[1]))
"""


def custom_job(exit_code: int = 0, sleep: float = 0.0, **pool: Any) -> ai.CustomJob:
    container = ai.ContainerSpec(
        image_uri="us-docker.pkg.dev/p/r/trainer:abc",
        command=[sys.executable, "-c", SCRIPT],
        args=[str(exit_code), str(sleep)],
        env=[ai.EnvVar(name="RELAUNCH_RUN_ID", value="run-1")],
    )
    return ai.CustomJob(
        display_name="run-1",
        labels={"relaunch-run": "run-1"},
        job_spec=ai.CustomJobSpec(
            worker_pool_specs=[
                ai.WorkerPoolSpec(
                    machine_spec=ai.MachineSpec(
                        machine_type="n1-standard-4",
                        accelerator_type=ai.AcceleratorType.NVIDIA_TESLA_T4,
                        accelerator_count=1,
                    ),
                    replica_count=1,
                    container_spec=container,
                    **pool,
                )
            ],
            scheduling=ai.Scheduling(
                strategy=ai.Scheduling.Strategy.SPOT,
                timeout=duration_pb2.Duration(seconds=3600),
            ),
        ),
    )


@pytest.fixture
def client(fake_gcp: FakeGCP) -> Any:
    fake_gcp.gcs.create_bucket("jobs")
    return vertex_job_client("us-central1")


def wait_state(client: Any, name: str, *states: S, timeout: float = 20.0) -> ai.CustomJob:
    return wait_until(
        lambda: (j := client.get_custom_job(name=name)).state in states and j, timeout
    )


def test_job_runs_its_command_against_the_fake_bucket(fake_gcp: FakeGCP, client: Any) -> None:
    job = client.create_custom_job(parent=PARENT, custom_job=custom_job())
    assert job.state == S.JOB_STATE_QUEUED
    seen = {job.state}
    final = wait_until(
        lambda: (
            seen.add((j := client.get_custom_job(name=job.name)).state)
            or (j.state == S.JOB_STATE_SUCCEEDED and j)
        )
    )
    assert {S.JOB_STATE_QUEUED, S.JOB_STATE_PENDING, S.JOB_STATE_RUNNING} <= seen
    assert final.start_time and final.end_time
    assert fake_gcp.gcs.get_object("jobs", "out/started").data == b"0"
    stored = fake_gcp.vertex.jobs[job.name].resource
    assert stored["jobSpec"]["scheduling"]["strategy"] == "SPOT"  # sent as 4, kept as a name


def test_non_zero_exit_fails_as_a_user_error(client: Any) -> None:
    job = client.create_custom_job(parent=PARENT, custom_job=custom_job(exit_code=3))
    final = wait_state(client, job.name, S.JOB_STATE_FAILED)
    assert "non-zero status of 3" in final.error.message
    assert classify_rpc_status(final.error.code, final.error.message) is Reason.USER_ERROR


def test_preemption_sends_sigterm_then_kills(fake_gcp: FakeGCP, client: Any) -> None:
    fake_gcp.notice = 0.5
    job = client.create_custom_job(parent=PARENT, custom_job=custom_job(sleep=60))
    wait_until(lambda: "out/started" in fake_gcp.gcs.buckets["jobs"])
    fake_gcp.vertex.preempt(job.name)
    final = wait_state(client, job.name, S.JOB_STATE_FAILED)
    assert fake_gcp.gcs.get_object("jobs", "out/sigterm").data == b"1"  # the notice arrived
    assert fake_gcp.vertex.jobs[job.name].workload.exit_code == -9  # then SIGKILL
    assert classify_rpc_status(final.error.code, final.error.message) is Reason.PREEMPTED


def test_cancel_goes_through_cancelling(fake_gcp: FakeGCP, client: Any) -> None:
    job = client.create_custom_job(parent=PARENT, custom_job=custom_job(sleep=60))
    wait_state(client, job.name, S.JOB_STATE_RUNNING)
    fake_gcp.notice = 0.3
    client.cancel_custom_job(name=job.name)
    assert client.get_custom_job(name=job.name).state in (
        S.JOB_STATE_CANCELLING,
        S.JOB_STATE_CANCELLED,
    )
    final = wait_state(client, job.name, S.JOB_STATE_CANCELLED)
    assert final.error.code == 1
    with pytest.raises(gexc.BadRequest):
        client.cancel_custom_job(name=job.name)


def test_list_filters_by_label_and_pages(fake_gcp: FakeGCP, client: Any) -> None:
    fake_gcp.execute = False
    for _ in range(3):
        client.create_custom_job(parent=PARENT, custom_job=custom_job())
    other = custom_job()
    other.labels = {"relaunch-run": "run-2"}
    client.create_custom_job(parent=PARENT, custom_job=other)
    request = ai.ListCustomJobsRequest(
        parent=PARENT, filter='labels.relaunch-run="run-1"', page_size=2
    )
    assert len(list(client.list_custom_jobs(request=request))) == 3


def test_quota_on_create_is_a_429(fake_gcp: FakeGCP, client: Any) -> None:
    fake_gcp.faults.quota("us-central1", sync=True, times=1)
    with pytest.raises(gexc.TooManyRequests) as info:
        client.create_custom_job(parent=PARENT, custom_job=custom_job())
    assert classify_exception(info.value) is Reason.QUOTA
    client.create_custom_job(parent=PARENT, custom_job=custom_job())  # only once


def test_job_waits_queued_while_quota_is_short(fake_gcp: FakeGCP, client: Any) -> None:
    fake_gcp.faults.quota("us-central1", sync=False)
    job = client.create_custom_job(parent=PARENT, custom_job=custom_job())
    time.sleep(fake_gcp.step * 6)  # six lifecycle steps: it would be running by now
    assert client.get_custom_job(name=job.name).state == S.JOB_STATE_QUEUED
    fake_gcp.faults.clear()
    wait_state(client, job.name, S.JOB_STATE_SUCCEEDED)


@pytest.mark.parametrize(
    ("script", "reason"),
    [("stockout", Reason.NO_CAPACITY), ("image_pull", Reason.IMAGE_PULL)],
)
def test_start_failures(fake_gcp: FakeGCP, client: Any, script: str, reason: Reason) -> None:
    if script == "stockout":
        fake_gcp.faults.stockout(region="us-central1", times=1)
    else:
        fake_gcp.faults.image_pull("trainer:abc", times=1)
    job = client.create_custom_job(parent=PARENT, custom_job=custom_job())
    final = wait_state(client, job.name, S.JOB_STATE_FAILED)
    assert classify_rpc_status(final.error.code, final.error.message) is reason


def test_permission_denied(fake_gcp: FakeGCP, client: Any) -> None:
    fake_gcp.faults.deny("aiplatform", "aiplatform.customJobs.create")
    with pytest.raises(gexc.Forbidden) as info:
        client.create_custom_job(parent=PARENT, custom_job=custom_job())
    assert classify_exception(info.value) is Reason.PERMISSION


def raw_create(fake: FakeGCP, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{fake.url}/v1/{PARENT}/customJobs", json=body, timeout=10)


def minimal(**scheduling: Any) -> dict[str, Any]:
    pool = {
        "machineSpec": {"machineType": "n1-standard-4"},
        "replicaCount": "1",
        "containerSpec": {"imageUri": "img"},
    }
    return {"displayName": "x", "jobSpec": {"workerPoolSpecs": [pool], "scheduling": scheduling}}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({**minimal(), "bogus": 1}, 'Unknown name "bogus"'),
        (minimal(strategy="SPOTT"), "jobSpec.scheduling.strategy"),
        (minimal(strategy=5), "jobSpec.scheduling.strategy"),  # 5 is no Strategy number
        (minimal(timeout=3600), "Duration"),  # a duration must be a string "3600s"
        (minimal(timeout="1h"), "Duration"),
        (minimal(restartJobOnWorkerRestart="yes"), "TYPE_BOOL"),
        ({"jobSpec": minimal()["jobSpec"]}, "display_name"),
    ],
)
def test_schema_rejects_bad_bodies(fake_gcp: FakeGCP, body: dict[str, Any], needle: str) -> None:
    resp = raw_create(fake_gcp, body)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["code"] == 400
    assert needle in error["message"]


@pytest.mark.parametrize(
    ("value", "name"), [(4, "SPOT"), (6, "FLEX_START"), ("STANDARD", "STANDARD")]
)
def test_enums_accepted_as_names_or_numbers(fake_gcp: FakeGCP, value: Any, name: str) -> None:
    resp = raw_create(fake_gcp, minimal(strategy=value, timeout="3600s"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["jobSpec"]["scheduling"]["strategy"] == name
