"""A build that pushes needs a registry repository; a pushed build needs pushed parents;
a cloud job only ever gets an image it can pull."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relaunch.errors import SpecError
from relaunch.images.build import build_images

from .conftest import config_at, write
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
