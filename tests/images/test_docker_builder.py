"""The docker builder against a fake `docker` on PATH that records its argv."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from relaunch.errors import BackendError
from relaunch.images.build import build_images, plan_images
from relaunch.images.plan import State

from .conftest import config_at, docker_builds, docker_pushes


def calls(record: Path) -> list[dict[str, object]]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines()]


def test_builds_parent_before_child_with_the_parent_uri(seeds: Path, fake_docker: Path) -> None:
    config = config_at(seeds)
    plan = plan_images(config, offline=True)
    events: list[tuple[str, str]] = []
    built = build_images(
        config,
        ["arr-trainer"],
        builder="docker",
        push=True,
        plan=plan,
        progress=lambda ev, it, text: events.append((ev, it.name)),
    )
    assert [b.item.name for b in built] == ["arr-pytorch-base", "arr-ml-stack", "arr-trainer"]
    argvs = docker_builds(fake_docker)
    assert len(argvs) == 3
    ml = plan.item("arr-ml-stack")
    base = plan.item("arr-pytorch-base")
    assert argvs[1] == [
        "buildx",
        "build",
        "--file",
        "Stack/arr-ml-stack/Dockerfile",
        "--tag",
        ml.uri,
        "--platform",
        "linux/amd64",
        "--progress",
        "plain",
        "--label",
        "dev.relaunch.image=arr-ml-stack",
        "--label",
        f"dev.relaunch.tag={ml.tag}",
        "--build-arg",
        f"BASE_IMAGE={base.uri}",
        "--load",
        "-",
    ]
    # pushed by `docker push` after each build, parents first
    assert docker_pushes(fake_docker) == [base.uri, ml.uri, plan.item("arr-trainer").uri]
    assert ("start", "arr-pytorch-base") in events and events[-1] == ("done", "arr-trainer")
    assert ("line", "arr-trainer") in events


def test_stdin_is_the_context_tarball_and_the_log_is_saved(seeds: Path, fake_docker: Path) -> None:
    config = config_at(seeds)
    built = build_images(config, ["arr-vertex-launcher"], builder="docker", offline=True)
    (call,) = calls(fake_docker)
    assert call["argv"][-2:] == ["--load", "-"]  # type: ignore[index]
    item = built[0].item
    tar = seeds / ".relaunch/images/contexts" / f"arr-vertex-launcher-{item.tag}.tar.gz"
    assert call["stdin_sha256"] == hashlib.sha256(tar.read_bytes()).hexdigest()
    log = seeds / ".relaunch/images/logs" / f"arr-vertex-launcher-{item.tag}.log"
    text = log.read_text()
    assert "#1 [internal] load build definition" in text and "buildx build" in text


def test_after_a_build_the_plan_is_up_to_date_and_nothing_rebuilds(
    seeds: Path, fake_docker: Path
) -> None:
    config = config_at(seeds)
    build_images(config, builder="docker", offline=True)
    assert len(calls(fake_docker)) == 4
    plan = plan_images(config, offline=True)
    assert {it.state for it in plan.items} == {State.UP_TO_DATE}
    assert build_images(config, builder="docker", offline=True) == []
    assert len(calls(fake_docker)) == 4


def test_dry_run_runs_nothing(seeds: Path, fake_docker: Path) -> None:
    built = build_images(config_at(seeds), builder="docker", dry_run=True, offline=True)
    assert [b.result for b in built] == [None] * 4
    assert calls(fake_docker) == []


def test_failing_build_is_a_clear_error_and_stops_the_children(
    seeds: Path, fake_docker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_DOCKER_RC", "1")
    with pytest.raises(BackendError) as e:
        build_images(config_at(seeds), ["arr-trainer"], builder="docker", offline=True)
    assert e.value.reason == "user-error"
    assert "build of arr-pytorch-base:" in str(e.value) and "full log:" in str(e.value)
    assert "gcloud auth" not in str(e.value)
    assert len(calls(fake_docker)) == 1
    assert plan_images(config_at(seeds), offline=True).item("arr-pytorch-base").needs_build


def test_push_without_repository_is_refused(tmp_path: Path, fake_docker: Path) -> None:
    from relaunch.errors import SpecError

    from .conftest import write

    write(tmp_path, "Dockerfile", "FROM debian\n")
    write(tmp_path, "relaunch.toml", '[images.app]\ndockerfile = "Dockerfile"\n')
    with pytest.raises(SpecError, match="no registry repository to push app"):
        build_images(config_at(tmp_path), builder="docker", push=True, offline=True)
    assert calls(fake_docker) == []


def test_require_clean_refuses_uncommitted_inputs(seeds: Path, fake_docker: Path) -> None:
    from relaunch.errors import UserInputError

    config = config_at(seeds)
    (seeds / "ARR_COC/model.py").write_text("dirty\n")
    with pytest.raises(UserInputError, match=r"ARR_COC/model.py is not committed"):
        build_images(config, ["arr-trainer"], builder="docker", require_clean=True, offline=True)
    assert calls(fake_docker) == []
    # the launcher's inputs are clean, so it builds
    launcher = ["arr-vertex-launcher"]
    build_images(config, launcher, builder="docker", require_clean=True, offline=True)
    assert len(calls(fake_docker)) == 1


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (
            lambda root: (root / "relaunch.toml").write_text(
                (root / "relaunch.toml").read_text() + "tag_length = 16\n"
            ),
            "relaunch.toml",
        ),
        (
            lambda root: (root / "ARR_COC/new_module.py").write_text("x = 1\n"),
            "ARR_COC/new_module.py",
        ),
        (
            lambda root: (root / "Stack/arr-trainer/Dockerfile").write_text(
                "ARG BASE_IMAGE=arr-ml-stack\nFROM $BASE_IMAGE\nRUN true\n"
            ),
            "Stack/arr-trainer/Dockerfile",
        ),
        (
            lambda root: (root / "Stack/arr-trainer/.image-manifest").write_text(
                "Stack/arr-trainer/Dockerfile\nARR_COC/**/*.py\n"
            ),
            "Stack/arr-trainer/.image-manifest",
        ),
    ],
    ids=["dirty relaunch.toml", "untracked input", "dirty Dockerfile", "dirty manifest"],
)
def test_require_clean_counts_everything_the_tag_is_made_of(
    seeds: Path, fake_docker: Path, edit: Callable[[Path], object], named: str
) -> None:
    from relaunch.errors import UserInputError

    edit(seeds)
    with pytest.raises(UserInputError, match=f"{named} is not committed"):
        build_images(
            config_at(seeds), ["arr-trainer"], builder="docker", require_clean=True, offline=True
        )
    assert calls(fake_docker) == []


def test_a_cli_from_23_on_without_buildx_says_what_to_install(
    seeds: Path, fake_docker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_DOCKER_CLIENT", "28.2.2")
    monkeypatch.setenv("FAKE_DOCKER_BUILDX_RC", "1")
    with pytest.raises(BackendError, match=r"docker CLI 28\.2\.2 .* has no buildx plugin") as e:
        build_images(config_at(seeds), ["arr-vertex-launcher"], builder="docker", offline=True)
    assert "docker-buildx" in str(e.value)
    assert calls(fake_docker) == []


def test_a_cli_before_23_without_buildx_builds_with_the_engines_buildkit(
    seeds: Path, fake_docker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_DOCKER_CLIENT", "20.10.24+dfsg1")
    monkeypatch.setenv("FAKE_DOCKER_BUILDX_RC", "1")
    built = build_images(config_at(seeds), ["arr-vertex-launcher"], builder="docker", offline=True)
    (argv,) = docker_builds(fake_docker)
    assert argv[:2] == ["build", "--file"] and "--load" not in argv
    assert built[0].result is not None and built[0].result.detail["docker"] == "engine"
