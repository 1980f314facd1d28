"""The CustomJob an attempt submits: from ``resources:`` or a W&B-Launch Vertex queue
config (the seeds' document, as users wrote them), checked against Google's schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.cloud.aiplatform_v1 import CustomJob
from google.protobuf import json_format

from relaunch.backends.base import SubmitContext
from relaunch.backends.vertex.backend import VertexBackend
from relaunch.errors import SpecError
from relaunch.runs.records import RunRecord
from relaunch.spec.loader import parse_job
from relaunch.store import LocalStore
from tests.fakegcp.schemas import validate

IMAGE = "us-central1-docker.pkg.dev/p/repo/trainer:abc123"
GCP = {"project": "my-project", "region": "us-central1", "staging_bucket": "gs://stage"}


def body(tmp_path: Path, yaml_text: str, **values: str) -> dict[str, Any]:
    """The REST body (what the client sends) of attempt 2 of a run of ``yaml_text``,
    after Google's schema accepted it."""
    spec = parse_job(yaml_text, "job.yaml", values or None)
    run = RunRecord(
        run_id="r-1", name=spec.name, queue="default", backend="vertex", spec=spec, gcp=GCP
    )
    macros = {"run_id": "r-1", "run_name": spec.name, "image_uri": IMAGE,
              "project_name": "proj", "entity_name": "team", "attempt": "2"}  # fmt: skip
    ctx = SubmitContext(
        store=LocalStore(tmp_path / "s"),
        command=spec.argv,
        env=dict(spec.env),
        image_uri=IMAGE,
        macros=macros,
    )
    job = VertexBackend().body(run, 2, "us-central1", ctx)
    # What the REST transport sends: proto JSON, enums as numbers, defaults left out.
    rest = json_format.MessageToDict(CustomJob.pb(job), use_integers_for_enums=True)
    return validate("aiplatform.v1", "GoogleCloudAiplatformV1CustomJob", rest)


def env_of(pool: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pool["containerSpec"]["env"]}


def test_resources_make_a_spot_job_running_the_runtime(tmp_path: Path) -> None:
    b = body(
        tmp_path,
        "name: t\nbackend: vertex\nimage: trainer\ncommand: [python, train.py]\n"
        "env: {LR: '0.1'}\nlabels: {team: vision}\n"
        "resources: {machine_type: g2-standard-8, accelerator_type: NVIDIA_L4,"
        " accelerator_count: 1, boot_disk_gb: 200}\n",
    )
    assert b["labels"] == {"team": "vision", "relaunch-run-id": "r-1", "relaunch-attempt": "2"}
    (pool,) = b["jobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"] == {
        "machineType": "g2-standard-8", "acceleratorType": "NVIDIA_L4", "acceleratorCount": 1,
    }  # fmt: skip
    assert pool["diskSpec"] == {"bootDiskSizeGb": 200}
    spec = pool["containerSpec"]
    assert spec["imageUri"] == IMAGE
    assert spec["command"] == ["python", "-m", "relaunch.runtime", "--", "python", "train.py"]
    env = env_of(pool)
    assert env["LR"] == "0.1" and env["RELAUNCH_RUN_ID"] == "r-1"
    assert env["RELAUNCH_ATTEMPT"] == "2" and env["RELAUNCH_STORE"].endswith("/s")
    # the runtime signs with the job's service account, from its VM's metadata server
    assert env["RELAUNCH_CREDENTIALS"] == "metadata-server"
    assert "RELAUNCH_ON_GCE" not in env  # no instance/preempted watch: Vertex sends SIGTERM
    assert b["jobSpec"]["scheduling"] == {"strategy": "SPOT"}
    assert b["jobSpec"]["baseOutputDirectory"] == {
        "outputUriPrefix": "gs://stage/relaunch/r-1/attempt-2"
    }


def test_replicas_put_the_chief_alone_in_pool_0(tmp_path: Path) -> None:
    b = body(
        tmp_path,
        "name: t\nbackend: vertex\nimage: x\ncommand: [t]\n"
        "resources: {machine_type: n1-standard-16, replica_count: 4}\n",
    )
    pools = b["jobSpec"]["workerPoolSpecs"]
    assert [p.get("replicaCount") for p in pools] == ["1", "3"]


def test_flex_start_asks_for_max_wait(tmp_path: Path) -> None:
    b = body(
        tmp_path,
        "name: t\nbackend: vertex\nimage: x\ncommand: [t]\n"
        "resources: {machine_type: a3-highgpu-8g, provisioning: flex-start, max_wait: 2h}\n",
    )
    assert b["jobSpec"]["scheduling"] == {"strategy": "FLEX_START", "maxWaitDuration": "7200s"}


# The seeds' "Complete Queue Configuration Example" (003_…txt), as a job's vertex: block.
PRODUCTION = """
spec:
  worker_pool_specs:
    - machine_spec:
        machine_type: a2-highgpu-8g
        accelerator_type: NVIDIA_TESLA_A100
        accelerator_count: 8
      replica_count: 1
      container_spec:
        image_uri: ${image_uri}
        command: ["python", "train.py"]
        args:
          - "--config"
          - "/workspace/config.yaml"
        env:
          - name: WANDB_PROJECT
            value: ${project_name}
          - name: WANDB_RUN_ID
            value: ${run_id}
          - name: CUDA_VISIBLE_DEVICES
            value: "0,1,2,3,4,5,6,7"
  staging_bucket: gs://my-ml-staging
  service_account: my-training-sa@my-project.iam.gserviceaccount.com
  network: projects/my-project/global/networks/my-vpc
  encryption_spec:
    kms_key_name: projects/my-project/locations/us-central1/keyRings/my-ring/cryptoKeys/my-key
run:
  restart_job_on_worker_restart: false
  timeout: 86400  # 24 hours in seconds
  tensorboard: projects/my-project/locations/us-central1/tensorboards/my-tensorboard
"""


def indent(text: str) -> str:
    return "\n".join("  " + line for line in text.strip("\n").splitlines())


def test_the_seeds_production_queue_config_maps_to_the_custom_job(tmp_path: Path) -> None:
    b = body(tmp_path, "name: t\nbackend: vertex\nvertex:\n" + indent(PRODUCTION) + "\n")
    (pool,) = b["jobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"] == {
        "machineType": "a2-highgpu-8g", "acceleratorType": "NVIDIA_TESLA_A100",
        "acceleratorCount": 8,
    }  # fmt: skip
    spec = pool["containerSpec"]
    assert spec["imageUri"] == IMAGE
    assert spec["command"][-4:] == ["python", "train.py", "--config", "/workspace/config.yaml"]
    env = env_of(pool)
    assert env["WANDB_PROJECT"] == "proj" and env["WANDB_RUN_ID"] == "r-1"
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7"
    js = b["jobSpec"]
    assert js["serviceAccount"] == "my-training-sa@my-project.iam.gserviceaccount.com"
    assert js["network"] == "projects/my-project/global/networks/my-vpc"
    assert js["tensorboard"].endswith("/tensorboards/my-tensorboard")
    # W&B Launch cannot ask for Spot; relaunch's default provisioning is spot.
    assert js["scheduling"] == {"strategy": "SPOT", "timeout": "86400s"}
    assert js["baseOutputDirectory"]["outputUriPrefix"].startswith("gs://my-ml-staging/")
    assert b["encryptionSpec"]["kmsKeyName"].endswith("/cryptoKeys/my-key")


def test_distributed_chief_and_workers_config(tmp_path: Path) -> None:
    pool = """
    - machine_spec: {machine_type: n1-standard-16, accelerator_type: NVIDIA_TESLA_V100,
                     accelerator_count: 4}
      replica_count: {n}
      container_spec: {image_uri: "${image_uri}"}"""
    text = (
        "name: t\nbackend: vertex\ncommand: [python, train.py]\nvertex:\n  spec:\n"
        "    worker_pool_specs:" + pool.replace("{n}", "1") + pool.replace("{n}", "3")
        + "\n    staging_bucket: gs://my-staging-bucket\n"
        "  run: {scheduling_strategy: STANDARD, restart_job_on_worker_restart: true}\n"
    )  # fmt: skip
    b = body(tmp_path, text)
    chief, workers = b["jobSpec"]["workerPoolSpecs"]
    assert chief.get("replicaCount") == "1" and workers["replicaCount"] == "3"
    # every replica runs the runtime (replica 0 of pool 0 leads: heartbeats, checkpoints)
    for p in (chief, workers):
        assert p["containerSpec"]["command"][-2:] == ["python", "train.py"]
        assert env_of(p)["RELAUNCH_RUN_ID"] == "r-1"
    assert b["jobSpec"]["scheduling"] == {"strategy": "STANDARD", "restartJobOnWorkerRestart": True}


def test_templates_and_secret_refs_of_a_queue_config(tmp_path: Path) -> None:
    text = """name: t
backend: vertex
image: trainer
command: [python, train.py]
templates:
  machine_type: {enum: [n1-standard-4, n1-standard-8, a2-highgpu-8g], default: n1-standard-4}
  gpu_type: {enum: [NVIDIA_TESLA_V100, NVIDIA_TESLA_A100], default: NVIDIA_TESLA_V100}
  gpu_count: {type: integer, minimum: 0, maximum: 8, default: 1}
vertex:
  spec:
    worker_pool_specs:
      - machine_spec:
          machine_type: "{{machine_type}}"
          accelerator_type: "{{gpu_type}}"
          accelerator_count: {{gpu_count}}
        container_spec:
          env:
            - name: HF_TOKEN
              valueFrom:
                secretKeyRef:
                  name: huggingface-token
                  key: token
    staging_bucket: gs://my-staging-${entity_name}
"""
    b = body(tmp_path, text, gpu_count="4", gpu_type="NVIDIA_TESLA_A100")
    (pool,) = b["jobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"]["acceleratorCount"] == 4
    assert pool["machineSpec"]["acceleratorType"] == "NVIDIA_TESLA_A100"
    assert b["jobSpec"]["baseOutputDirectory"]["outputUriPrefix"].startswith(
        "gs://my-staging-team/"
    )
    env = env_of(pool)
    assert "HF_TOKEN" not in env  # a reference for the runtime, never a value in the body
    settings = json.loads(env["RELAUNCH_RUNTIME"])
    assert settings["secrets"] == {
        "HF_TOKEN": "projects/my-project/secrets/huggingface-token/versions/latest"
    }


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("resources: {machine_type: n1-standard-4, accelerator_type: NVIDIA_NOPE}",
         "'NVIDIA_NOPE' is not a value Vertex AI accepts"),
        ("resources: {machine_type: n1-standard-4, max_wait: 1h}",
         "max_wait applies to FLEX_START only"),
    ],
)  # fmt: skip
def test_values_vertex_would_refuse_are_spec_errors(
    tmp_path: Path, extra: str, message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        body(tmp_path, f"name: t\nbackend: vertex\nimage: x\ncommand: [t]\n{extra}\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("image: x\ncommand: [t]", "needs resources.machine_type or a queue config"),
        ("command: [t]\nresources: {machine_type: n1}", "needs image:"),
        ("image: x\ncommand: [t]\nresources: {machine_type: n1}\n"
         "env_from_secret: {K: 'env:K'}", "env:VAR secrets exist only where the agent runs"),
        ("image: x\ncommand: [t]\nresources: {machine_type: n1, regions: [mars]}",
         "'mars' is not a Google Cloud region"),
        ("image: x\ncommand: [t]\nresources: {machine_type: n1}\nlabels: {Team: x}",
         "label key 'Team'"),
        ("image: x\nvertex: {spec: {worker_pool_specs: [{machine_spec: {machine_type: n1}}]}}",
         "command is required"),
        ("image: x\ncommand: [t]\nvertex: {spec: {worker_pool_specs: []}}",
         "at least 1 item"),
        ("image: x\ncommand: [t]\nvertex: {spec: {worker_pool_specs: [{machine_spec: "
         "{machine_typo: n1}}]}}", "unknown field 'vertex.spec.worker_pool_specs[0]"),
    ],
)  # fmt: skip
def test_bad_vertex_specs_name_the_field(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse_job(f"name: t\nbackend: vertex\n{text}\n", "job.yaml")


@pytest.mark.parametrize("name", ["job.yaml", "wandb-queue.yaml"])
def test_the_vertex_examples_build_valid_custom_jobs(tmp_path: Path, name: str) -> None:
    example = Path(__file__).resolve().parents[3] / "examples" / "vertex" / name
    b = body(tmp_path, example.read_text())
    pools = b["jobSpec"]["workerPoolSpecs"]
    assert all(p["containerSpec"]["command"][:4] == ["python", "-m", "relaunch.runtime", "--"]
               for p in pools)  # fmt: skip
    assert b["jobSpec"]["scheduling"]["strategy"] == "SPOT"


def test_the_enum_names_checked_without_the_library_are_the_librarys() -> None:
    # `relaunch run` skips converting a body to a CustomJob when its enums are all
    # among these names: each must still be one google-cloud-aiplatform accepts.
    from google.cloud.aiplatform_v1.types import AcceleratorType, Scheduling

    from relaunch.backends.vertex.backend import KNOWN_ACCELERATORS, KNOWN_STRATEGIES

    assert {m.name for m in AcceleratorType} >= KNOWN_ACCELERATORS
    assert {m.name for m in Scheduling.Strategy} >= KNOWN_STRATEGIES


@pytest.mark.parametrize(
    ("gpu", "refused"), [("NVIDIA_L4", False), ("NVIDIA_NOPE", True), ("${run_id}", True)]
)
def test_the_pre_queue_check_refuses_what_the_library_refuses(
    tmp_path: Path, gpu: str, refused: bool
) -> None:
    spec = parse_job(
        f"name: t\nbackend: vertex\nimage: x\ncommand: [t]\n"
        f"resources: {{machine_type: n1-standard-4, accelerator_type: '{gpu}'}}\n",
        "job.yaml",
    )
    run = RunRecord(run_id="r-1", name="t", queue="default", backend="vertex", spec=spec, gcp=GCP)
    store = LocalStore(tmp_path / "s")
    store.url = "gs://bucket/prefix"  # the check reads only the URL of the store
    if refused:
        with pytest.raises(SpecError, match="is not a value Vertex AI accepts"):
            VertexBackend().check(run, store)
    else:
        VertexBackend().check(run, store)
