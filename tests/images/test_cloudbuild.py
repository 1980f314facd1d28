"""The Cloud Build builder (and the auto fallback chain) against a local HTTP fake of
Cloud Storage, Cloud Build and the registry, reached through [gcp.endpoints]."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from relaunch.errors import BackendError, SpecError
from relaunch.images.build import build_images, plan_images
from relaunch.images.builders.auto import AutoBuilder
from relaunch.images.builders.base import Builder
from relaunch.images.builders.cloudbuild import CloudBuildBuilder
from relaunch.images.builders.docker import DockerBuilder
from relaunch.images.plan import State
from relaunch.spec.project import ProjectConfig

from .conftest import config_at, docker_builds, docker_pushes
from .fakes import FakeGoogle


@pytest.fixture
def project(seeds: Path, fake_google: FakeGoogle) -> Path:
    with (seeds / "relaunch.toml").open("a") as f:
        f.write(
            '[gcp]\nproject = "proj"\nstaging_bucket = "gs://stage"\n'
            f'[gcp.endpoints]\ncloudbuild = "{fake_google.url}"\nstorage = "{fake_google.url}"\n'
            f'artifactregistry = "{fake_google.url}"\n'
        )
    return seeds


def cloudbuild(config: ProjectConfig, kind: str) -> Builder:
    return CloudBuildBuilder(config, poll_interval=0, retry_deadline=0)


def test_build_uploads_creates_streams_and_polls(project: Path, fake_google: FakeGoogle) -> None:
    config = config_at(project)
    lines: list[str] = []
    built = build_images(
        config,
        ["arr-ml-stack"],
        builder="cloudbuild",
        make=cloudbuild,
        progress=lambda ev, it, text: lines.append(text) if ev == "line" else None,
    )
    assert [b.item.name for b in built] == ["arr-pytorch-base", "arr-ml-stack"]
    base, ml = (b.item for b in built)
    body = fake_google.state.created[1]
    source = body["source"]["storageSource"]
    assert source["bucket"] == "stage"
    staged = fake_google.state.objects[("stage", source["object"])]
    with tarfile.open(fileobj=io.BytesIO(staged), mode="r:gz") as tar:
        assert "Stack/arr-ml-stack/Dockerfile" in tar.getnames()
    step = body["steps"][0]
    assert step["name"] == "gcr.io/cloud-builders/docker"
    assert step["args"][:5] == ["build", "--file", "Stack/arr-ml-stack/Dockerfile", "--tag", ml.uri]
    assert f"BASE_IMAGE={base.uri}" in step["args"] and step["args"][-1] == "."
    assert body["images"] == [ml.uri]
    assert body["timeout"] == "14400s"
    assert body["logsBucket"] == "gs://stage/relaunch/build-logs"
    # the log streamed as the build walked QUEUED → WORKING → SUCCESS, and was saved
    assert "step 3: SUCCESS" in lines
    log = (project / ".relaunch/images/logs" / f"arr-ml-stack-{ml.tag}.log").read_text()
    assert "step 1: WORKING" in log and "step 3: SUCCESS" in log
    record = json.loads((project / ".relaunch/images/built/arr-ml-stack.json").read_text())
    assert record["pushed"] is True and record["builder"] == "cloudbuild"
    # pushed tags show in the registry: the next plan sees them
    for it in (base, ml):
        path = it.uri.split("/", 1)[1].rsplit(":", 1)[0]
        fake_google.state.manifests.add(f"{path}:{it.tag}")
    plan = plan_images(config)
    assert plan.item("arr-ml-stack").state is State.UP_TO_DATE


def test_same_context_is_uploaded_once(project: Path, fake_google: FakeGoogle) -> None:
    config = config_at(project)
    build_images(config, ["arr-vertex-launcher"], builder="cloudbuild", make=cloudbuild)
    uploads = sum(r.startswith("POST /upload/") for r in fake_google.state.requests)
    (project / ".relaunch/images/built/arr-vertex-launcher.json").unlink()
    build_images(config, ["arr-vertex-launcher"], builder="cloudbuild", make=cloudbuild)
    assert sum(r.startswith("POST /upload/") for r in fake_google.state.requests) == uploads + 1
    assert len([k for k in fake_google.state.objects if "sources/" in k[1]]) == 1


@pytest.mark.parametrize(
    ("status", "detail", "reason", "says"),
    [
        ("FAILURE", "step 0 exited with 1", "user-error", "fix the Dockerfile"),
        (
            "FAILURE",
            "123-compute@developer.gserviceaccount.com does not have storage.objects.get",
            "permission",
            "grant roles/storage.objectViewer on gs://stage to the Cloud Build identity",
        ),
        ("TIMEOUT", "", "user-error", "raise the image's timeout"),
        ("INTERNAL_ERROR", "", "transient", "it is not your Dockerfile"),
        ("CANCELLED", "", "stopped", "was cancelled"),
        ("EXPIRED", "", "transient", "expired in the queue"),
    ],
)
def test_terminal_statuses_map_to_clear_errors(
    project: Path, fake_google: FakeGoogle, status: str, detail: str, reason: str, says: str
) -> None:
    fake_google.state.final_status = status
    fake_google.state.failure_detail = detail
    with pytest.raises(BackendError) as e:
        build_images(
            config_at(project), ["arr-vertex-launcher"], builder="cloudbuild", make=cloudbuild
        )
    assert e.value.reason == reason
    assert says in str(e.value) and "\n" not in str(e.value)
    assert not (project / ".relaunch/images/built/arr-vertex-launcher.json").exists()


def test_403_on_create_is_a_permission_error_with_the_fix(
    project: Path, fake_google: FakeGoogle
) -> None:
    fake_google.state.fail_create = (403, "The caller does not have permission")
    with pytest.raises(BackendError) as e:
        build_images(
            config_at(project), ["arr-vertex-launcher"], builder="cloudbuild", make=cloudbuild
        )
    assert e.value.reason == "permission"
    assert "roles/cloudbuild.builds.editor" in str(e.value)


@pytest.mark.parametrize(("code", "reason"), [(429, "transient"), (503, "transient")])
def test_rate_limits_and_5xx_on_upload_are_transient(
    project: Path, fake_google: FakeGoogle, code: int, reason: str
) -> None:
    fake_google.state.fail_upload = (code, "slow down")
    # with the library's retries (cut short), then without: both say "transient"
    for deadline in (0.5, 0):
        builder = CloudBuildBuilder(config_at(project), poll_interval=0, retry_deadline=deadline)
        with pytest.raises(BackendError) as e:
            build_images(
                config_at(project), ["arr-vertex-launcher"], make=lambda c, k, b=builder: b
            )
        assert e.value.reason == reason


def test_cloudbuild_needs_project_and_bucket(seeds: Path) -> None:
    with pytest.raises(SpecError, match="staging_bucket"):
        build_images(config_at(seeds), ["arr-vertex-launcher"], builder="cloudbuild", offline=True)


def test_auto_falls_back_to_local_buildx_on_permission(
    project: Path, fake_google: FakeGoogle, fake_docker: Path
) -> None:
    fake_google.state.fail_create = (403, "denied")
    config = config_at(project)

    def auto(c: ProjectConfig, kind: str) -> Builder:
        return AutoBuilder(c, cloudbuild=CloudBuildBuilder(c, poll_interval=0, retry_deadline=0))

    built = build_images(config, ["arr-vertex-launcher"], builder="auto", make=auto)
    assert built[0].result is not None and built[0].result.builder == "docker"
    assert len(docker_builds(fake_docker)) == 1
    pushed = docker_pushes(fake_docker)
    assert pushed == [built[0].item.uri], "the fallback pushes, as Cloud Build would have"
    log = built[0].result.log.read_text()
    assert "falling back to the local docker engine" in log


def test_auto_does_not_retry_a_broken_dockerfile_elsewhere(
    project: Path, fake_google: FakeGoogle, fake_docker: Path
) -> None:
    fake_google.state.final_status = "FAILURE"
    config = config_at(project)
    cloud = CloudBuildBuilder(config, poll_interval=0, retry_deadline=0)
    auto = AutoBuilder(config, cloudbuild=cloud)
    with pytest.raises(BackendError, match="failed"):
        build_images(config, ["arr-vertex-launcher"], make=lambda c, k: auto)
    assert not fake_docker.exists()


def test_auto_without_cloud_or_engine_says_what_to_set(
    seeds: Path, fake_docker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_DOCKER_INFO_RC", "1")  # `docker info`: no engine
    with pytest.raises(SpecError, match="no builder available"):
        build_images(config_at(seeds), ["arr-vertex-launcher"], builder="auto", offline=True)
    monkeypatch.setenv("FAKE_DOCKER_INFO_RC", "0")
    built = build_images(config_at(seeds), ["arr-vertex-launcher"], builder="auto", offline=True)
    assert built[0].result is not None and built[0].result.builder == "docker"


@pytest.mark.parametrize("status", [503, 429])
def test_auto_falls_back_to_local_buildx_on_transient_and_quota_errors(
    project: Path, fake_google: FakeGoogle, fake_docker: Path, status: int
) -> None:
    fake_google.state.fail_create = (status, "try later")
    config = config_at(project)
    cloud = CloudBuildBuilder(config, poll_interval=0, retry_deadline=0)
    auto = AutoBuilder(config, cloudbuild=cloud, docker=DockerBuilder())
    built = build_images(config, ["arr-vertex-launcher"], make=lambda c, k: auto)
    assert built[0].result is not None and built[0].result.builder == "docker"
    assert docker_pushes(fake_docker) == [built[0].item.uri]


def test_a_transient_poll_error_is_retried(project: Path, fake_google: FakeGoogle) -> None:
    fake_google.state.fail_get = [500, 500]  # not retried by the client itself
    built = build_images(
        config_at(project), ["arr-vertex-launcher"], builder="cloudbuild", make=cloudbuild
    )
    assert built[0].result is not None and built[0].result.pushed
    gets = [r for r in fake_google.state.requests if r.startswith("GET /v1/projects/proj/builds")]
    assert len(gets) == 2 + 4  # two failed polls, then QUEUED, WORKING, WORKING, SUCCESS


def test_too_many_poll_errors_give_up(project: Path, fake_google: FakeGoogle) -> None:
    fake_google.state.fail_get = [500] * 10
    with pytest.raises(BackendError) as e:
        build_images(
            config_at(project), ["arr-vertex-launcher"], builder="cloudbuild", make=cloudbuild
        )
    assert e.value.reason == "transient"


def test_the_last_log_line_without_a_newline_is_kept(
    project: Path, fake_google: FakeGoogle
) -> None:
    fake_google.state.last_log_line = b"DONE pushed, no newline"
    lines: list[str] = []
    built = build_images(
        config_at(project),
        ["arr-vertex-launcher"],
        builder="cloudbuild",
        make=cloudbuild,
        progress=lambda ev, it, text: lines.append(text) if ev == "line" else None,
    )
    assert lines[-1] == "DONE pushed, no newline"
    assert built[0].result is not None
    assert built[0].result.log.read_text().endswith("DONE pushed, no newline\n")
