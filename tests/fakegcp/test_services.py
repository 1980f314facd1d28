"""Cloud Build, Cloud Run, Cloud Logging and Secret Manager through the official clients."""

from __future__ import annotations

import sys

import pytest
import requests
from google.api_core import exceptions as gexc
from google.cloud import run_v2
from google.cloud.devtools import cloudbuild_v1

from relaunch.gcp import clients
from relaunch.gcp.errors import classify_exception
from relaunch.states import Reason
from tests.fakegcp.fake import FakeGCP

P = "fake-project"


def test_cloud_build_create_and_get(fake_gcp: FakeGCP) -> None:
    client = clients.cloud_build_client()
    build = cloudbuild_v1.Build(
        steps=[cloudbuild_v1.BuildStep(name="gcr.io/cloud-builders/docker", args=["build", "."])],
        images=["us-docker.pkg.dev/p/r/trainer:abc"],
        timeout={"seconds": 1200},
    )
    op = client.create_build(project_id=P, build=build)
    done = op.result(timeout=20)
    assert done.status == cloudbuild_v1.Build.Status.SUCCESS
    assert done.results.images[0].digest.startswith("sha256:")
    assert client.get_build(project_id=P, id=done.id).status == cloudbuild_v1.Build.Status.SUCCESS


def run_job(command: list[str]) -> run_v2.Job:
    container = run_v2.Container(
        image="us-docker.pkg.dev/p/r/agent:1",
        command=command[:1],
        args=command[1:],
        env=[run_v2.EnvVar(name="RELAUNCH_QUEUE", value="default")],
    )
    template = run_v2.TaskTemplate(containers=[container], max_retries=0, timeout="600s")
    return run_v2.Job(template=run_v2.ExecutionTemplate(template=template, task_count=1))


def test_cloud_run_job_runs_an_execution(fake_gcp: FakeGCP) -> None:
    jobs = clients.run_jobs_client()
    parent = f"projects/{P}/locations/us-central1"
    script = "import os; print('agent', os.environ['RELAUNCH_QUEUE'])"
    job = jobs.create_job(
        parent=parent, job=run_job([sys.executable, "-c", script]), job_id="agent"
    ).result(timeout=20)
    assert job.name == f"{parent}/jobs/agent"
    execution = jobs.run_job(name=job.name).result(timeout=20)
    assert execution.succeeded_count == 1
    listed = list(clients.run_executions_client().list_executions(parent=job.name))
    assert [e.name for e in listed] == [execution.name]
    update = run_job([sys.executable, "-c", "raise SystemExit(3)"])
    update.name = job.name
    jobs.update_job(job=update).result(timeout=20)
    with pytest.raises(gexc.GoogleAPICallError):
        jobs.run_job(name=job.name).result(timeout=20)
    logs = clients.logging_client(P)
    entries = list(logs.list_entries(filter_='resource.labels.job_name="agent"'))
    assert [e.payload for e in entries] == ["agent default"]


def test_cloud_run_image_pull_failure(fake_gcp: FakeGCP) -> None:
    fake_gcp.faults.image_pull("agent:1")
    jobs = clients.run_jobs_client()
    parent = f"projects/{P}/locations/us-central1"
    job = jobs.create_job(parent=parent, job=run_job(["true"]), job_id="a2").result(timeout=20)
    with pytest.raises(gexc.GoogleAPICallError) as info:
        jobs.run_job(name=job.name).result(timeout=20)
    assert "not found" in str(info.value)


def test_secret_access(fake_gcp: FakeGCP) -> None:
    fake_gcp.secrets.add("wandb-key", b"s3cret")
    client = clients.secret_manager_client()
    name = f"projects/{P}/secrets/wandb-key/versions/latest"
    assert client.access_secret_version(name=name).payload.data == b"s3cret"
    with pytest.raises(gexc.NotFound):
        client.access_secret_version(name=f"projects/{P}/secrets/nope/versions/latest")
    fake_gcp.faults.deny("secretmanager", "secretmanager.versions.access")
    with pytest.raises(gexc.Forbidden) as info:
        client.access_secret_version(name=name)
    assert classify_exception(info.value) is Reason.PERMISSION


def test_run_schema_rejects_a_numeric_timeout(fake_gcp: FakeGCP) -> None:
    body = {"template": {"template": {"containers": [{"image": "x"}], "timeout": 600}}}
    url = f"{fake_gcp.url}/v2/projects/{P}/locations/us-central1/jobs?jobId=j"
    resp = requests.post(url, json=body, timeout=10)
    assert resp.status_code == 400 and "Duration" in resp.json()["error"]["message"]
