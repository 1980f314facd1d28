"""On the real engine, each way a build with ``--push`` can fail reads as what it is: an
engine that does not answer, a registry that wants credentials, a registry that refuses
the push, a registry that is not there; and ``auto`` falls back (or not) as it should."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from relaunch.errors import BackendError, SpecError
from relaunch.images.build import build_images, plan_images
from relaunch.images.builders.auto import AutoBuilder
from relaunch.images.builders.cloudbuild import CloudBuildBuilder
from relaunch.images.plan import State
from relaunch.spec.project import ProjectConfig

from .busybox_stack import make_busybox_stack
from .conftest import config_at
from .engine import Engine, LocalRegistry, cli_without_buildx, free_port, running_registry
from .fakes import FakeGoogle
from .test_engine_stack import relaunch_images

LAUNCHER = "arr-vertex-launcher"


def project(tmp_path: Path, repository: str) -> Path:
    return make_busybox_stack(tmp_path / "proj", repository)


def last_error(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def test_a_registry_that_wants_credentials_is_an_auth_problem(
    tmp_path: Path, engine: Engine
) -> None:
    with running_registry(tmp_path / "auth-registry", auth=True) as registry:
        root = project(tmp_path, registry.repository())
        done = relaunch_images(
            root, "build", LAUNCHER, "--push", "--builder", "docker", "--offline"
        )
    assert done.returncode == 1
    error = last_error(done.stderr)
    assert f"the registry {registry.host} wants credentials" in error, done.stderr
    assert f"docker login {registry.host}" in error
    assert "build of" not in error and "gcloud" not in error


def test_a_registry_that_refuses_the_push_is_a_refusal(tmp_path: Path, engine: Engine) -> None:
    with running_registry(tmp_path / "ro-registry", readonly=True) as registry:
        root = project(tmp_path, registry.repository())
        done = relaunch_images(root, "build", LAUNCHER, "--push", "--builder", "docker")
    assert done.returncode == 1
    error = last_error(done.stderr)
    assert f"the registry {registry.host} refused the push" in error, done.stderr
    assert "credentials" not in error and "build of" not in error


def test_a_registry_that_is_not_there_is_unreachable(tmp_path: Path, engine: Engine) -> None:
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    root = project(tmp_path, f"{host}/relaunch")
    done = relaunch_images(root, "build", LAUNCHER, "--push", "--builder", "docker", "--offline")
    assert done.returncode == 1
    error = last_error(done.stderr)
    assert f"cannot reach the registry {host}" in error and "connection refused" in error
    # without --offline the plan already says so, before anything is built
    plan = relaunch_images(root, "build", LAUNCHER, "--push", "--builder", "docker")
    assert plan.returncode != 0 and "cannot reach the registry" in plan.stderr


def test_an_engine_that_does_not_answer_is_an_engine_problem(
    tmp_path: Path, engine: Engine, local_registry: LocalRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path, local_registry.repository(f"t{uuid.uuid4().hex[:8]}"))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    done = relaunch_images(root, "build", LAUNCHER, "--push", "--builder", "docker")
    assert done.returncode == 1
    error = last_error(done.stderr)
    assert f"no Docker engine answers at unix://{tmp_path}/no-engine.sock" in error, done.stderr
    assert "start the Docker daemon" in error and "registry" not in error.split(" — ")[0]


def test_auto_without_cloud_build_builds_on_the_engine(
    tmp_path: Path, engine: Engine, local_registry: LocalRegistry
) -> None:
    root = project(tmp_path, local_registry.repository(f"t{uuid.uuid4().hex[:8]}"))
    built = build_images(config_at(root), [LAUNCHER], builder="auto", push=True)
    result = built[0].result
    assert result is not None and result.builder == "docker" and result.pushed
    assert result.detail["docker"] == "engine", "no buildx here: the engine's BuildKit"
    assert plan_images(config_at(root)).item(LAUNCHER).state is State.UP_TO_DATE


def _cloud_project(tmp_path: Path, repository: str, fake: FakeGoogle) -> ProjectConfig:
    root = project(tmp_path, repository)
    with (root / "relaunch.toml").open("a") as f:
        f.write(
            '[gcp]\nproject = "proj"\nstaging_bucket = "gs://stage"\n'
            f'[gcp.endpoints]\ncloudbuild = "{fake.url}"\nstorage = "{fake.url}"\n'
        )
    return config_at(root)


def test_auto_falls_back_from_a_refused_cloud_build_to_the_engine_and_pushes(
    tmp_path: Path, engine: Engine, local_registry: LocalRegistry, fake_google: FakeGoogle
) -> None:
    fake_google.state.fail_create = (403, "cloudbuild.builds.create denied")
    repo = local_registry.repository(f"t{uuid.uuid4().hex[:8]}")
    config = _cloud_project(tmp_path, repo, fake_google)

    def auto(c: ProjectConfig, kind: str) -> AutoBuilder:
        return AutoBuilder(c, cloudbuild=CloudBuildBuilder(c, poll_interval=0, retry_deadline=0))

    built = build_images(config, [LAUNCHER], builder="auto", make=auto)  # type: ignore[arg-type]
    result = built[0].result
    assert result is not None and result.builder == "docker" and result.pushed
    item = built[0].item
    assert local_registry.has(item.uri.split("/", 1)[1].rsplit(":", 1)[0], item.tag)
    assert "falling back to the local docker engine" in result.log.read_text()


def test_auto_does_not_rebuild_a_broken_dockerfile_on_the_engine(
    tmp_path: Path, engine: Engine, local_registry: LocalRegistry, fake_google: FakeGoogle
) -> None:
    fake_google.state.final_status = "FAILURE"
    fake_google.state.failure_detail = "step 0 exited 1"
    repo = local_registry.repository(f"t{uuid.uuid4().hex[:8]}")
    config = _cloud_project(tmp_path, repo, fake_google)
    cloud = CloudBuildBuilder(config, poll_interval=0, retry_deadline=0)
    with pytest.raises(BackendError, match=r"Cloud Build build .* failed") as e:
        build_images(config, [LAUNCHER], make=lambda c, k: AutoBuilder(c, cloudbuild=cloud))
    assert e.value.reason == "user-error"
    log = (tmp_path / "proj/.relaunch/images/logs").glob(f"{LAUNCHER}-*.log")
    assert all("relaunch: docker " not in p.read_text() for p in log), "never built locally"


def test_auto_with_a_cli_that_has_no_buildx_says_what_to_install(
    tmp_path: Path, engine: Engine, local_registry: LocalRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = cli_without_buildx()
    if cli is None:
        pytest.skip("no docker CLI from 23 on without buildx on this machine")
    monkeypatch.setenv("RELAUNCH_DOCKER", cli)
    root = project(tmp_path, local_registry.repository(f"t{uuid.uuid4().hex[:8]}"))
    with pytest.raises(SpecError) as e:
        build_images(config_at(root), [LAUNCHER], builder="auto", push=True)
    message = str(e.value)
    assert message.startswith("no builder available: Cloud Build is not configured, and ")
    assert "has no buildx plugin" in message and "docker-buildx" in message
