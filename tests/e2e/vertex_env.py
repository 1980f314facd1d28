"""A project whose runs go to Vertex AI — the fake cloud — with a GCS store on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from relaunch.api import Workspace
from relaunch.runs.records import AttemptRecord, RunRecord
from relaunch.spec.project import ProjectConfig
from relaunch.store.gcs import GCSStore
from tests.e2e.conftest import Env
from tests.fakegcp.fake import FakeGCP

TRAINER = Path(__file__).with_name("trainer.py")
IMAGE = "us-central1-docker.pkg.dev/fake-project/repo/trainer:0123456789ab"
STORE = "gs://runs/relaunch"


class VertexEnv(Env):
    """The local e2e ``Env`` with a GCS store on the fake cloud and Vertex jobs."""

    def __init__(self, root: Path, fake: FakeGCP) -> None:
        self.fake = fake
        fake.gcs.create_bucket("runs")
        config = ProjectConfig.model_validate(
            {"gcp": {"project": "fake-project", "region": "us-central1"}, "store": {"url": STORE}}
        )
        config._root = root
        super().__init__(root, Workspace(config, GCSStore(STORE, retry_initial=0.01)))

    def job(
        self, name: str = "t", *, steps: int = 40, step_time: float = 0.03, **spec: Any
    ) -> Path:
        resources = {
            "machine_type": "n1-standard-4",
            "accelerator_type": "NVIDIA_TESLA_T4",
            "accelerator_count": 1,
        }
        vertex = {"backend": "vertex", "image": IMAGE, "resources": resources, "grace_period": 3}
        return super().job(name, steps=steps, step_time=step_time, **{**vertex, **spec})

    def run(self, run_id: str) -> RunRecord:
        return self.ws.repo.get_run(run_id)

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        return self.ws.repo.attempts(run_id, self.run(run_id).attempt)

    def job_name(self, run_id: str, n: int) -> str | None:
        for attempt in self.attempts(run_id):
            if attempt.n == n and attempt.handle:
                return str(attempt.handle["name"])
        return None

    def events(self, run_id: str, kind: str) -> list[str]:
        return [e.message for e in self.ws.repo.events(run_id) if e.kind == kind]

    def creates(self) -> list[tuple[str, str, str]]:
        return [
            r
            for r in self.fake.requests("aiplatform")
            if r[1] == "POST" and r[2].endswith("/customJobs")
        ]


def vertex_cloud(fake: FakeGCP, tmp_path: Path, monkeypatch: Any) -> Iterator[VertexEnv]:
    """The body of a test module's ``cloud`` fixture: Vertex polled every 0.2 s, no
    store from the environment, the backend built afresh before and after."""
    monkeypatch.setenv("RELAUNCH_VERTEX_POLL_INTERVAL", "0.2")
    monkeypatch.delenv("RELAUNCH_STORE", raising=False)
    from relaunch.backends import registry

    registry._instances.pop("vertex", None)  # read the poll interval above
    yield VertexEnv(tmp_path, fake)
    registry._instances.pop("vertex", None)
