"""The GCE ops commands as a user types them, against the fake cloud: serial, events
--cloud, vms, cleanup, ps --watch, and status saying where a VM is stuck."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from google.cloud import compute_v1 as ce

from relaunch.gcp.clients import compute_instances_client
from tests.e2e.gce_env import IMAGE
from tests.e2e.vertex_env import TRAINER
from tests.fakegcp.fake import FakeGCP
from tests.fakegcp.fixtures import wait_until

pytest_plugins = ["tests.fakegcp.fixtures"]


def relaunch(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relaunch.cli.main", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


class Project:
    def __init__(self, fake: FakeGCP, root: Path) -> None:
        self.fake, self.root = fake, root
        fake.gcs.create_bucket("runs")
        (root / "relaunch.toml").write_text(
            '[store]\nurl = "gs://runs/r"\n[gcp]\nproject = "fake-project"\n'
            'region = "us-central1"\n[agent]\npoll = "0.1s"\nlease_ttl = "3s"\n'
        )
        self.env = {**os.environ, "RELAUNCH_GCE_POLL_INTERVAL": "0.2"}
        self.env.pop("RELAUNCH_STORE", None)
        self.agent: subprocess.Popen[bytes] | None = None

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return relaunch(*args, cwd=self.root, env=self.env)

    def submit(self, name: str, steps: int = 100000, **extra: object) -> str:
        job = {
            "name": name, "backend": "gce", "image": IMAGE,
            "command": ["python", str(TRAINER), "--steps", str(steps), "--step-time", "0.02",
                        "--markers", str(self.root / "m")],
            "resources": {"machine_type": "n1-standard-4", "accelerator_type": "NVIDIA_TESLA_T4",
                          "accelerator_count": 1, "zones": ["us-central1-a"]},
            "heartbeat_interval": 0.2, "checkpoints": {"sync_interval": 0}, "grace_period": 3,
            **extra,
        }  # fmt: skip
        (self.root / f"{name}.yaml").write_text(yaml.safe_dump(job))
        queued = self("run", f"{name}.yaml", "--detach")
        assert queued.returncode == 0, queued.stderr
        return queued.stdout.split()[0]

    def start_agent(self) -> None:
        self.agent = subprocess.Popen(
            [sys.executable, "-m", "relaunch.cli.main", "agent"],
            cwd=self.root, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def status(self, rid: str) -> dict[str, object]:
        return json.loads(self("status", rid, "--json").stdout)  # type: ignore[no-any-return]

    def step(self, rid: str) -> int:
        hb = self.status(rid)["heartbeat"]
        return int(hb["step"] or 0) if isinstance(hb, dict) else 0


@pytest.fixture
def proj(fake_gcp: FakeGCP, tmp_path: Path) -> Iterator[Project]:
    p = Project(fake_gcp, tmp_path)
    yield p
    if p.agent is not None:
        p.agent.terminate()
        p.agent.wait(timeout=30)


def insert_stray(name: str, run_id: str, attempt: int) -> None:
    """A VM with relaunch's labels that relaunch does not track (an agent died mid-delete)."""
    compute_instances_client().insert(
        project="fake-project",
        zone="us-east1-b",
        instance_resource=ce.Instance(
            name=name,
            machine_type="zones/us-east1-b/machineTypes/e2-small",
            labels={"relaunch-run-id": run_id, "relaunch-attempt": str(attempt)},
            disks=[ce.AttachedDisk(boot=True, initialize_params=ce.AttachedDiskInitializeParams(
                source_image="projects/cos-cloud/global/images/family/cos-stable"))],
            network_interfaces=[ce.NetworkInterface(network="global/networks/default")],
        ),
    )  # fmt: skip


def test_vms_serial_events_cleanup(proj: Project) -> None:
    rid = proj.submit("live")
    proj.start_agent()
    wait_until(lambda: proj.step(rid) >= 3, timeout=90, every=0.3)
    insert_stray("old-1", rid, 0)  # the live run's earlier attempt: an orphan
    insert_stray("gone-1", "gone", 1)  # a run this store does not know

    listed = proj("vms", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "Google Cloud project fake-project" in listed.stderr
    owners = {v["name"]: v["owner"] for v in json.loads(listed.stdout)["vms"]}
    assert owners == {f"{rid}-1": "owned", "old-1": "orphan", "gone-1": "unknown-run"}
    table = proj("vms")
    assert "orphan" in table.stdout and f"{rid}-1" in table.stdout

    # All of it: this trainer reports a checkpoint ten times a second, and each commit
    # says so; on a loaded machine the boot lines are more than 500 lines back by now.
    serial = proj("serial", rid, "--lines", "100000")
    assert serial.returncode == 0, serial.stderr
    assert f"serial console of VM {rid}-1 in Google Cloud project fake-project" in serial.stderr
    assert "relaunch-boot: driver-installing" in serial.stdout
    assert "relaunch-boot: container-starting" in serial.stdout

    events = proj("events", rid, "--cloud")
    assert events.returncode == 0, events.stderr
    assert "project fake-project" in events.stderr
    lines = events.stdout.splitlines()
    insert = next(i for i, line in enumerate(lines) if f"insert {rid}-1 (DONE)" in line)
    submitted = next(i for i, line in enumerate(lines) if "attempt-submitted" in line)
    running = next(i for i, line in enumerate(lines) if "attempt-running" in line)
    assert submitted < running and insert < running  # merged by time

    cleaned = proj("cleanup", "--yes", "--json")
    assert cleaned.returncode == 0, cleaned.stderr
    assert [v["name"] for v in json.loads(cleaned.stdout)["deleted"]] == ["old-1"]
    wait_until(lambda: "old-1" not in {n for _, n in proj.fake.compute.vms}, timeout=30)
    names = {n for _, n in proj.fake.compute.vms}
    assert f"{rid}-1" in names and "gone-1" in names  # only the orphan went
    assert proj.status(rid)["run"]["state"] == "RUNNING"  # type: ignore[index]

    everything = proj("cleanup", "--all", "--yes", "--json")
    assert everything.returncode == 0, everything.stderr
    result = json.loads(everything.stdout)
    assert result["stopped"] == [{"run_id": rid, "state": "STOPPED"}]
    wait_until(lambda: not proj.fake.compute.vms, timeout=30)


def test_status_says_where_a_vm_is_stuck_and_serial_of_a_local_run_is_refused(
    proj: Project,
) -> None:
    proj.fake.compute.cos.driver = "never"
    rid = proj.submit("stuck", gce={"gpu_timeout": 600}, startup_timeout="15m")  # > gpu_timeout
    proj.start_agent()
    wait_until(lambda: "boot:" in proj("status", rid).stdout, timeout=90, every=0.3)
    status = proj("status", rid).stdout
    assert "installing the GPU driver (cos-extensions install gpu)" in status
    assert proj("stop", rid).returncode == 0

    (proj.root / "local.yaml").write_text(yaml.safe_dump({"name": "l", "command": ["true"]}))
    local = proj("run", "local.yaml", "--detach")
    lid = local.stdout.split()[0]
    refused = proj("serial", lid)
    assert refused.returncode == 2 and "not on a VM" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_ps_watch_prints_again_until_ctrl_c(proj: Project) -> None:
    out = proj.root / "watch.out"
    with open(out, "wb") as sink:
        watch = subprocess.Popen(
            [sys.executable, "-m", "relaunch.cli.main", "ps", "--watch", "1"],
            cwd=proj.root, env=proj.env, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        # Two screens: the clock line comes twice.
        wait_until(lambda: out.read_text().count("Ctrl-C to stop") >= 2, timeout=60, every=0.2)
    finally:
        watch.send_signal(signal.SIGINT)
        code = watch.wait(timeout=30)
    assert code == 0 and "Traceback" not in out.read_text()


def test_cleanup_cancels_a_vertex_job_no_run_owns(proj: Project) -> None:
    from google.cloud import aiplatform_v1 as ai

    from relaunch.gcp.clients import vertex_job_client

    client = vertex_job_client("us-central1")
    pool = ai.WorkerPoolSpec(
        machine_spec=ai.MachineSpec(machine_type="n1-standard-4"),
        replica_count=1,
        container_spec=ai.ContainerSpec(
            image_uri=IMAGE, command=["python", "-c", "import time; time.sleep(120)"]
        ),
    )
    job = client.create_custom_job(
        parent="projects/fake-project/locations/us-central1",
        custom_job=ai.CustomJob(
            display_name="ghost",
            labels={"relaunch-run-id": "ghost", "relaunch-attempt": "1"},
            job_spec=ai.CustomJobSpec(worker_pool_specs=[pool]),
        ),
    )
    cleaned = proj("cleanup", "--yes", "--json")
    assert cleaned.returncode == 0, cleaned.stderr
    assert json.loads(cleaned.stdout)["cancelled"] == [job.name]
    wait_until(lambda: proj.fake.vertex.jobs[job.name].state == "JOB_STATE_CANCELLED", timeout=30)
