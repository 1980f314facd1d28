"""`relaunch run` of a job whose image is a stack image: the run is checked before any
image is built, and builds say what they do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relaunch.api import Workspace
from relaunch.errors import UserInputError
from relaunch.spec.loader import load_project
from relaunch.store import open_store

from .conftest import write
from .fakes import FakeGoogle
from .test_cli import run as run_images

JOB = """\
name: t
backend: vertex
image: arr-vertex-launcher
command: ["python", "train.py"]
resources: {machine_type: n1-standard-4}
"""


@pytest.fixture
def project(seeds: Path, fake_google: FakeGoogle) -> Path:
    with (seeds / "relaunch.toml").open("a") as f:
        f.write(
            'builder = "docker"\n[gcp]\nproject = "fake-project"\nregion = "us-central1"\n'
            f'[gcp.endpoints]\nartifactregistry = "{fake_google.url}"\n'
        )
    write(seeds, "job.yaml", JOB)
    return seeds


def test_a_job_its_backend_refuses_builds_nothing(project: Path, fake_docker: Path) -> None:
    config = load_project(project / "relaunch.toml")
    ws = Workspace(config, open_store(str(project / ".store")))  # local: vertex refuses it
    with pytest.raises(UserInputError, match="a job in the cloud cannot reach"):
        ws.submit(project / "job.yaml")
    assert not fake_docker.exists(), "no image may be built for a run that is refused"


def test_submit_reports_each_image_it_builds(
    project: Path, fake_docker: Path, fake_google: FakeGoogle, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relaunch.backends.vertex.backend import VertexBackend
    from relaunch.store import ObjectStore

    # The run is accepted (as with a gs:// store); it must say what it builds.

    monkeypatch.setattr(VertexBackend, "check", lambda self, run, store: None)
    config = load_project(project / "relaunch.toml")
    store: ObjectStore = open_store(str(project / ".store"))
    lines: list[str] = []
    rid = Workspace(config, store).submit(project / "job.yaml", on_image=lines.append)
    uri = json.loads(run_images(project, "list", "--json").stdout)[-1]["uri"]
    assert lines[0].startswith("building image arr-vertex-launcher:")
    assert lines[-1].startswith(f"pushed {uri}")
    assert Workspace(config, store).repo.get_run(rid).image_uri == uri
