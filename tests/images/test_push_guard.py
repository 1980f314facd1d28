"""A build that pushes needs a registry repository; a pushed build needs pushed parents;
a cloud job only ever gets an image it can pull."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relaunch.errors import SpecError
from relaunch.images.build import build_images

from .conftest import config_at, docker_builds, docker_pushes, write
from .test_cli import one_line_error, run

NO_REPO_TOML = (
    '[gcp]\nproject = "p"\nstaging_bucket = "gs://stage"\n[images.app]\ndockerfile = "Dockerfile"\n'
)


def no_repo_project(root: Path) -> Path:
    write(root, "Dockerfile", "FROM debian\n")
    write(root, "relaunch.toml", NO_REPO_TOML)
    return root


@pytest.mark.parametrize("kind", ["cloudbuild", "auto"])
def test_builders_that_always_push_need_a_repository(
    tmp_path: Path, kind: str, fake_docker: Path
) -> None:
    root = no_repo_project(tmp_path / "p")
    made: list[str] = []

    def make(config: object, name: str) -> object:
        made.append(name)
        raise AssertionError("no builder may run without a repository")

    with pytest.raises(SpecError, match=r"no registry repository to push app") as e:
        build_images(config_at(root), builder=kind, offline=True, make=make)  # type: ignore[arg-type]
    assert "[images.app] repository" in (e.value.hint or "")
    assert made == [] and not fake_docker.exists()


def test_cli_cloudbuild_without_repository_is_one_line_exit_2(tmp_path: Path) -> None:
    root = no_repo_project(tmp_path / "p")
    line = one_line_error(run(root, "build", "--builder", "cloudbuild", "--offline"))
    assert "no registry repository to push app" in line and "[image_stack] repository" in line
    assert not (root / ".relaunch/images/built").exists()


def test_auto_without_cloud_build_and_without_push_still_builds_locally(
    tmp_path: Path, fake_docker: Path
) -> None:
    write(tmp_path, "Dockerfile", "FROM debian\n")
    write(tmp_path, "relaunch.toml", '[images.app]\ndockerfile = "Dockerfile"\n')
    built = build_images(config_at(tmp_path), builder="auto", offline=True)
    assert built[0].result is not None and not built[0].result.pushed
    (call,) = [json.loads(x) for x in fake_docker.read_text().splitlines()]
    assert "--load" in call["argv"]


def argvs(record: Path) -> list[list[str]]:
    if not record.exists():
        return []
    return [json.loads(x)["argv"] for x in record.read_text().splitlines()]


def test_push_after_a_local_load_build_pushes_the_whole_lineage(
    seeds: Path, fake_docker: Path
) -> None:
    config = config_at(seeds)
    build_images(config, ["arr-trainer"], builder="docker", offline=True)
    loaded = argvs(fake_docker)
    assert len(loaded) == 3 and all("--load" in a for a in loaded)
    # built locally only: --push must push every image, parents first
    built = build_images(config, ["arr-trainer"], builder="docker", offline=True, push=True)
    rebuilt = docker_builds(fake_docker)[3:]
    assert [b.item.name for b in built] == ["arr-pytorch-base", "arr-ml-stack", "arr-trainer"]
    assert docker_pushes(fake_docker) == [b.item.uri for b in built]
    base_uri = built[0].item.uri
    assert f"BASE_IMAGE={base_uri}" in rebuilt[1], "the child is FROM the parent just pushed"
    # now known to be pushed: nothing left to do
    assert build_images(config, ["arr-trainer"], builder="docker", offline=True, push=True) == []


def test_cli_push_after_load_is_not_up_to_date(seeds: Path, fake_docker: Path) -> None:
    done = run(seeds, "build", "arr-vertex-launcher", "--builder", "docker", "--offline")
    assert done.returncode == 0, done.stderr
    done = run(seeds, "build", "arr-vertex-launcher", "--builder", "docker", "--offline", "--push")
    assert done.returncode == 0, done.stderr
    assert "up to date" not in done.stderr
    assert len(docker_builds(fake_docker)) == 2 and len(docker_pushes(fake_docker)) == 1
