"""The instance an attempt inserts, checked against Google's compute.v1 schema, and the
start-up script it carries (linted with shellcheck, quoting proved on hostile input)."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from google.cloud.compute_v1 import Instance
from google.protobuf import json_format

from relaunch.backends.base import SubmitContext
from relaunch.backends.gce.backend import GceBackend
from relaunch.backends.gce.body import accelerator_name, upload_url, vm_name
from relaunch.backends.gce.script import STARTUP_SCRIPT, nul_joined
from relaunch.errors import SpecError
from relaunch.runs.records import RunRecord
from relaunch.spec.loader import parse_job
from relaunch.store.gcs import GCSStore
from tests.fakegcp.schemas import validate

IMAGE = "us-central1-docker.pkg.dev/p/repo/trainer:abc123"
GCP = {"project": "my-project", "region": "us-central1"}
BASE = (
    "name: t\nbackend: gce\nimage: trainer\ncommand: [python, train.py]\n"
    "resources: {machine_type: n1-standard-8, accelerator_type: NVIDIA_TESLA_T4,"
    " accelerator_count: 2, zones: [us-central1-b]}\n"
)


def body(yaml_text: str, *, n: int = 2, run_id: str = "r-1", command: list[str] | None = None,
         env: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """The REST body of attempt ``n``, after Google's schema accepted it."""
    spec = parse_job(yaml_text, "job.yaml")
    run = RunRecord(run_id=run_id, name=spec.name, queue="q", backend="gce", spec=spec, gcp=GCP)
    ctx = SubmitContext(
        store=GCSStore("gs://bucket/pre fix", retry_initial=0.01),
        command=command or spec.argv,
        env=env or dict(spec.env),
        image_uri=IMAGE,
    )
    instance = GceBackend().body(run, n, "us-central1-b", ctx)
    rest = json_format.MessageToDict(Instance.pb(instance))
    return validate("compute.v1", "Instance", rest)  # type: ignore[no-any-return]


def metadata(b: dict[str, Any]) -> dict[str, str]:
    return {i["key"]: i["value"] for i in b["metadata"]["items"]}


def words(encoded: str) -> list[str]:
    return base64.b64decode(encoded).decode().split("\0")[:-1]


def test_a_spot_gpu_vm_on_cos(tmp_path: Path) -> None:
    b = body(BASE + "labels: {team: vision}\n")
    assert b["name"] == "r-1-2"
    assert b["machineType"] == "zones/us-central1-b/machineTypes/n1-standard-8"
    assert b["labels"] == {"team": "vision", "relaunch-run-id": "r-1", "relaunch-attempt": "2"}
    assert b["guestAccelerators"] == [
        {"acceleratorType": "zones/us-central1-b/acceleratorTypes/nvidia-tesla-t4",
         "acceleratorCount": 2}
    ]  # fmt: skip
    assert b["scheduling"] == {
        "provisioningModel": "SPOT",
        "instanceTerminationAction": "DELETE",
        "onHostMaintenance": "TERMINATE",
        "automaticRestart": False,
    }
    disk = b["disks"][0]["initializeParams"]
    assert disk["sourceImage"] == "projects/cos-cloud/global/images/family/cos-stable"
    md = metadata(b)
    assert md["startup-script"] == STARTUP_SCRIPT
    assert md["relaunch-gpus"] == "2" and md["relaunch-gpu-timeout"] == "300"
    assert words(md["relaunch-argv"]) == ["relaunch-runtime", "--", "python", "train.py"]
    env = dict(w.split("=", 1) for w in words(md["relaunch-env"]))
    assert env["RELAUNCH_RUN_ID"] == "r-1" and env["RELAUNCH_ATTEMPT"] == "2"
    assert env["RELAUNCH_ON_GCE"] == "1" and env["RELAUNCH_STORE"] == "gs://bucket/pre fix"
    assert env["RELAUNCH_CREDENTIALS"] == "metadata-server"
    assert md["relaunch-registry"] == "us-central1-docker.pkg.dev"
    assert md["relaunch-store-upload"].endswith(
        "/upload/storage/v1/b/bucket/o?uploadType=media&name=pre%20fix%2Fruns%2Fr-1%2F"
    )
    assert md["relaunch-live-upload"].endswith(  # the heartbeat lives under live/
        "/upload/storage/v1/b/bucket/o?uploadType=media&name=pre%20fix%2Flive%2Fr-1%2F"
    )


def test_gce_options_reach_the_body() -> None:
    b = body(
        BASE + "gce: {termination_action: stop, max_run_duration: 2h, network: n1,"
        " subnetwork: regions/us-central1/subnetworks/s, external_ip: false,"
        " service_account: sa@p.iam.gserviceaccount.com, scopes: [s1], tags: [ml],"
        " metadata: {enable-oslogin: 'TRUE'}, image: projects/p/global/images/i}\n"
    )
    assert b["scheduling"]["instanceTerminationAction"] == "STOP"
    assert b["scheduling"]["maxRunDuration"] == {"seconds": "7200"}
    nic = b["networkInterfaces"][0]
    assert nic == {"network": "n1", "subnetwork": "regions/us-central1/subnetworks/s"}
    assert b["serviceAccounts"] == [{"email": "sa@p.iam.gserviceaccount.com", "scopes": ["s1"]}]
    assert b["tags"] == {"items": ["ml"]}
    assert metadata(b)["enable-oslogin"] == "TRUE"
    assert b["disks"][0]["initializeParams"]["sourceImage"] == "projects/p/global/images/i"


def test_standard_vm_without_gpu() -> None:
    b = body(
        "name: t\nbackend: gce\nimage: trainer\ncommand: [python, t.py]\n"
        "resources: {machine_type: e2-standard-4, provisioning: standard}\n"
    )
    assert "guestAccelerators" not in b
    assert b["scheduling"] == {"onHostMaintenance": "MIGRATE", "automaticRestart": False}
    assert metadata(b)["relaunch-gpus"] == "0"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("gce: {metadata: {startup-script: x}}\n", "set by relaunch"),
        ("gce: {termination_action: keep}\n", "termination_action"),
        ("gce: {max_run_duration: 5}\n", "between 30s and 120d"),
        ("gce: {gpu_timout: 5}\n", "did you mean 'gpu_timeout'"),
    ],
)
def test_bad_gce_sections_are_refused(extra: str, needle: str) -> None:
    with pytest.raises(SpecError, match=needle):
        parse_job(BASE + extra, "job.yaml")


def test_backend_gce_needs_a_machine_and_an_image() -> None:
    with pytest.raises(SpecError, match="machine_type"):
        parse_job("name: t\nbackend: gce\nimage: x\ncommand: [a]\n", "job.yaml")
    with pytest.raises(SpecError, match="zone"):
        parse_job(BASE.replace("us-central1-b", "mars"), "job.yaml")


def test_names_and_helpers() -> None:
    long = "a" * 63
    assert len(vm_name(long, 12345)) <= 63 and vm_name(long, 1) != vm_name("a" * 62 + "b", 1)
    assert accelerator_name("NVIDIA_L4") == "nvidia-l4"
    assert upload_url("gs://b", "r", None) == (
        "https://storage.googleapis.com/upload/storage/v1/b/b/o?uploadType=media&name=runs%2Fr%2F"
    )
    with pytest.raises(ValueError, match="NUL"):
        nul_joined(["a\0b"])


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_the_start_up_script_passes_shellcheck(tmp_path: Path) -> None:
    script = tmp_path / "startup.sh"
    script.write_text(STARTUP_SCRIPT)
    done = subprocess.run(["shellcheck", "-s", "bash", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_hostile_words_reach_docker_unchanged(tmp_path: Path) -> None:
    """The argv and env decoding the script does, on words a shell would mangle."""
    hostile = ["python", "-c", "print('$HOME `id` \"q\" ; rm -rf /')", "a b\tc", "*", "-e", ""]
    env = {"X": "$(touch pwned)", "Y": "multi\nline"}
    snippet = (
        'args=()\nwhile IFS= read -r -d "" w; do args+=("$w"); done < <(printf %s "$1" | '
        'base64 -d)\nprintf "<%s>\\n" "${args[@]}"\n'
    )
    for payload, expected in ((nul_joined(hostile), hostile),
                              (nul_joined(env), [f"{k}={v}" for k, v in env.items()])):  # fmt: skip
        out = subprocess.run(
            ["bash", "-c", snippet, "bash", payload], capture_output=True, text=True, cwd=tmp_path
        ).stdout
        assert out == "".join(f"<{w}>\n" for w in expected)
    assert not (tmp_path / "pwned").exists()
