"""A project whose runs go to GCE spot VMs — the fake cloud — with a GCS store on it.

The fake runs each VM's real start-up script with stand-ins for the COS tools
(``tests/fakegcp/cos.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relaunch.runs.records import AttemptRecord
from tests.e2e.vertex_env import VertexEnv
from tests.fakegcp.cos import recorded

IMAGE = "us-central1-docker.pkg.dev/fake-project/repo/trainer:0123456789ab"


class GceEnv(VertexEnv):
    """VertexEnv's store and helpers; jobs with ``backend: gce``."""

    def job(
        self, name: str = "t", *, steps: int = 40, step_time: float = 0.03, **spec: Any
    ) -> Path:
        resources = {
            "machine_type": "n1-standard-4",
            "accelerator_type": "NVIDIA_TESLA_T4",
            "accelerator_count": 1,
            "zones": ["us-central1-a", "us-central1-b"],
        }
        gce = {
            "backend": "gce",
            "image": IMAGE,
            "resources": resources,
            "grace_period": 3,
            "gce": {"gpu_timeout": 10},
        }
        return super(VertexEnv, self).job(name, steps=steps, step_time=step_time, **{**gce, **spec})

    def vm_name(self, run_id: str, n: int) -> str | None:
        return self.job_name(run_id, n)

    def attempt(self, run_id: str, n: int) -> AttemptRecord:
        return next(a for a in self.attempts(run_id) if a.n == n)

    def inserts(self) -> list[tuple[str, str, str]]:
        return [
            r
            for r in self.fake.requests("compute")
            if r[1] == "POST" and r[2].endswith("/instances")
        ]

    def docker_runs(self, vm: str) -> list[list[str]]:
        return [a for a in recorded(self.fake.compute.state_dir(vm), "docker") if a[0] == "run"]

    def serial(self, vm: str) -> str:
        workload = self.fake.compute.vm(vm).workload
        return workload.output() if workload else ""
