"""The CLI on Vertex runs, as a user types it, against the fake cloud."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.e2e.vertex_env import IMAGE, TRAINER
from tests.fakegcp.fake import FakeGCP

pytest_plugins = ["tests.fakegcp.fixtures"]


def relaunch(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relaunch.cli.main", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_run_ps_status_logs_stop_on_vertex(fake_gcp: FakeGCP, tmp_path: Path) -> None:
    fake_gcp.gcs.create_bucket("runs")
    (tmp_path / "relaunch.toml").write_text(
        '[store]\nurl = "gs://runs/r"\n[gcp]\nproject = "fake-project"\nregion = "us-east1"\n'
        '[agent]\npoll = "0.1s"\nlease_ttl = "3s"\n'
    )
    # Steps enough that it cannot finish before `stop`, however slow the machine.
    job = {
        "name": "cli", "backend": "vertex", "image": IMAGE,
        "command": ["python", str(TRAINER), "--steps", "1000000", "--step-time", "0.02",
                    "--markers", str(tmp_path / "m")],
        "resources": {"machine_type": "n1-standard-4"}, "heartbeat_interval": 0.2,
        "checkpoints": {"sync_interval": 0}, "grace_period": 3,
    }  # fmt: skip
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    env = {**os.environ, "RELAUNCH_VERTEX_POLL_INTERVAL": "0.2"}
    env.pop("RELAUNCH_STORE", None)
    doctor = relaunch("doctor", "job.yaml", cwd=tmp_path, env=env)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "vertex: project fake-project, regions us-east1" in doctor.stdout
    assert "local emulator endpoints" in doctor.stdout
    queued = relaunch("run", "job.yaml", "--detach", cwd=tmp_path, env=env)
    assert queued.returncode == 0, queued.stderr
    rid = queued.stdout.split()[0]
    agent = subprocess.Popen(
        [sys.executable, "-m", "relaunch.cli.main", "agent"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180  # generous: CI machines are often loaded
        while True:
            ps = relaunch("ps", "--json", cwd=tmp_path, env=env)
            row = next(r for r in json.loads(ps.stdout) if r["run_id"] == rid)
            if row["state"] == "RUNNING" and row.get("step"):
                break
            assert time.monotonic() < deadline, ps.stdout
            time.sleep(0.3)
        assert row["backend"] == "vertex" and row["where"] == "us-east1"
        status = relaunch("status", rid, "--json", cwd=tmp_path, env=env)
        attempt = json.loads(status.stdout)["attempts"][0]
        assert attempt["handle"]["name"].startswith(
            "projects/fake-project/locations/us-east1/customJobs/"
        )
        deadline = time.monotonic() + 120  # the runtime ships its log every 2 s
        while "start at step 0" not in relaunch("logs", rid, cwd=tmp_path, env=env).stdout:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        cloud_log = relaunch("logs", rid, "--cloud", cwd=tmp_path, env=env)
        assert "start at step 0" in cloud_log.stdout, cloud_log.stderr
        stopped = relaunch("stop", rid, cwd=tmp_path, env=env)
        assert stopped.returncode == 0, stopped.stderr
    finally:
        agent.terminate()
        agent.wait(timeout=30)
    final = json.loads(relaunch("status", rid, "--json", cwd=tmp_path, env=env).stdout)
    assert final["run"]["state"] == "STOPPED"
    job_name = final["attempts"][0]["handle"]["name"]
    assert fake_gcp.vertex.jobs[job_name].state == "JOB_STATE_CANCELLED"
