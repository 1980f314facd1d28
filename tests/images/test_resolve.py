"""resolve_image: what a job's `image:` means, building what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaunch.errors import NotFoundError, SpecError
from relaunch.images import resolve_image
from relaunch.images.build import plan_images

from .conftest import config_at, docker_builds, docker_pushes
from .fakes import FakeGoogle


@pytest.fixture
def project(seeds: Path, fake_google: FakeGoogle) -> Path:
    with (seeds / "relaunch.toml").open("a") as f:
        f.write(f'builder = "docker"\n[gcp.endpoints]\nartifactregistry = "{fake_google.url}"\n')
    return seeds


def test_full_references_pass_through(project: Path) -> None:
    config = config_at(project)
    for ref in ("python:3.11-slim", "us-docker.pkg.dev/p/r/x:1", "debian@sha256:" + "a" * 64):
        assert resolve_image(config, ref, build_missing=False) == ref


def test_a_typo_is_not_sent_to_docker_hub(project: Path) -> None:
    with pytest.raises(SpecError, match="did you mean 'arr-trainer'"):
        resolve_image(config_at(project), "arr-traner", build_missing=True)


def test_present_tag_resolves_without_building(
    project: Path, fake_google: FakeGoogle, fake_docker: Path
) -> None:
    config = config_at(project)
    for it in plan_images(config).items:
        path = it.uri.split("/", 1)[1].rsplit(":", 1)[0]
        fake_google.state.manifests.add(f"{path}:{it.tag}")
    uri = resolve_image(config, "arr-trainer", build_missing=True)
    assert uri == plan_images(config).item("arr-trainer").uri
    assert not fake_docker.exists()


def test_missing_tag_without_build_is_not_found(project: Path) -> None:
    with pytest.raises(NotFoundError, match=r"relaunch images build arr-trainer --push"):
        resolve_image(config_at(project), "arr-trainer", build_missing=False)


def test_missing_tag_is_built_and_pushed_parents_first(
    project: Path, fake_google: FakeGoogle, fake_docker: Path
) -> None:
    config = config_at(project)
    uri = resolve_image(config, "arr-trainer", build_missing=True)
    calls = docker_builds(fake_docker)
    tags = [a[a.index("--tag") + 1] for a in calls]
    assert [t.rsplit("/", 1)[1].split(":")[0] for t in tags] == [
        "arr-pytorch-base",
        "arr-ml-stack",
        "arr-trainer",
    ]
    assert tags[-1] == uri and docker_pushes(fake_docker) == tags
    # an edit means a new tag: the old URI is never returned again
    (project / "ARR_COC/model.py").write_text("class Model: v2 = 1\n")
    assert resolve_image(config, "arr-trainer", build_missing=True) != uri


def test_an_image_without_repository_cannot_go_to_a_cloud_job(
    tmp_path: Path, fake_docker: Path
) -> None:
    from relaunch.images.build import build_images

    from .conftest import write

    write(tmp_path, "Dockerfile", "FROM debian\n")
    write(tmp_path, "relaunch.toml", '[images.app]\ndockerfile = "Dockerfile"\n')
    config = config_at(tmp_path)
    build_images(config, builder="docker", offline=True)  # a local --load build
    with pytest.raises(SpecError, match="no registry repository") as e:
        resolve_image(config, "app", build_missing=True)
    assert "[images.app] repository" in (e.value.hint or "")


def test_a_local_only_build_is_never_resolved_when_the_registry_cannot_say(
    project: Path, fake_google: FakeGoogle, fake_docker: Path
) -> None:
    from relaunch.errors import UserInputError
    from relaunch.images.build import build_images

    config = config_at(project)
    build_images(config, ["arr-vertex-launcher"], offline=True)  # --load, never pushed
    fake_google.state.registry_status = 403
    with pytest.raises(UserInputError, match="cannot tell whether"):
        resolve_image(config, "arr-vertex-launcher", build_missing=False)


def test_build_progress_reaches_the_callback(
    project: Path, fake_google: FakeGoogle, fake_docker: Path
) -> None:
    lines: list[str] = []
    uri = resolve_image(
        config_at(project), "arr-vertex-launcher", build_missing=True, on_build=lines.append
    )
    assert lines[0].startswith("building image arr-vertex-launcher:")
    assert lines[-1].startswith(f"pushed {uri}")
