"""resolve_image: what a job's `image:` means, building what is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relaunch.errors import NotFoundError, SpecError
from relaunch.images import resolve_image
from relaunch.images.build import plan_images

from .conftest import config_at
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
    calls = [json.loads(x)["argv"] for x in fake_docker.read_text().splitlines()]
    tags = [a[a.index("--tag") + 1] for a in calls]
    assert [t.rsplit("/", 1)[1].split(":")[0] for t in tags] == [
        "arr-pytorch-base",
        "arr-ml-stack",
        "arr-trainer",
    ]
    assert tags[-1] == uri and all("--push" in a for a in calls)
    # an edit means a new tag: the old URI is never returned again
    (project / "ARR_COC/model.py").write_text("class Model: v2 = 1\n")
    assert resolve_image(config, "arr-trainer", build_missing=True) != uri
