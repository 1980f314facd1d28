"""The cloudbuild builder against the fake cloud (tests/fakegcp), which validates every
request body against Google's published schema."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from relaunch.errors import BackendError
from relaunch.images.build import build_images
from relaunch.images.builders.base import Builder
from relaunch.images.builders.cloudbuild import LOGS, SOURCES, CloudBuildBuilder
from relaunch.spec.project import ProjectConfig
from tests.fakegcp.fake import FakeGCP

from .conftest import config_at


@pytest.fixture
def project(seeds: Path, fake_gcp: FakeGCP) -> Path:
    fake_gcp.gcs.create_bucket("stage")
    with (seeds / "relaunch.toml").open("a") as f:
        f.write(f'[gcp]\nproject = "{fake_gcp.project}"\nstaging_bucket = "gs://stage"\n')
    return seeds


def cloudbuild(config: ProjectConfig, kind: str) -> Builder:
    return CloudBuildBuilder(config, poll_interval=0.01, retry_deadline=0)


def test_a_build_passes_the_schema_stages_its_context_and_streams_its_log(
    project: Path, fake_gcp: FakeGCP
) -> None:
    lines: list[str] = []
    built = build_images(
        config_at(project),
        ["arr-vertex-launcher"],
        builder="cloudbuild",
        offline=True,
        make=cloudbuild,
        progress=lambda ev, it, text: lines.append(text) if ev == "line" else None,
    )
    item = built[0].item
    (build,) = fake_gcp.cloudbuild.builds.values()  # accepted by the schema check
    assert build["status"] == "SUCCESS" and build["images"] == [item.uri]
    source = build["source"]["storageSource"]
    assert source["bucket"] == "stage" and source["object"].startswith(f"{SOURCES}/")
    staged = fake_gcp.gcs.get_object("stage", source["object"]).data
    with tarfile.open(fileobj=io.BytesIO(staged), mode="r:gz") as tar:
        assert "Stack/arr-vertex-launcher/entrypoint-wrapper.sh" in tar.getnames()
    assert build["logsBucket"] == f"gs://stage/{LOGS}"
    assert lines[-2:] == ["Step #0: SUCCESS", "DONE"]
    assert any(line.startswith("starting build") for line in lines)
    assert built[0].result is not None and built[0].result.pushed


@pytest.mark.parametrize(("outcome", "says"), [("FAILURE", "failed"), ("TIMEOUT", "timed out")])
def test_failure_and_timeout_are_clear_errors(
    project: Path, fake_gcp: FakeGCP, outcome: str, says: str
) -> None:
    fake_gcp.cloudbuild.outcome = outcome
    fake_gcp.cloudbuild.last_log_line = "ERROR: build step 0 failed"
    with pytest.raises(BackendError, match=says) as e:
        build_images(
            config_at(project),
            ["arr-vertex-launcher"],
            builder="cloudbuild",
            offline=True,
            make=cloudbuild,
        )
    assert e.value.reason == "user-error"
    log = next((project / ".relaunch/images/logs").glob("arr-vertex-launcher-*.log"))
    assert log.read_text().endswith("ERROR: build step 0 failed\n")
    assert not (project / ".relaunch/images/built/arr-vertex-launcher.json").exists()
