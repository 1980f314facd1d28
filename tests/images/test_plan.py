"""Plan states against a registry (a local fake of the Docker Registry v2 API)."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaunch.errors import SpecError, UserInputError
from relaunch.images.build import build_images, plan_images
from relaunch.images.fingerprint import BuildRecord, save_record
from relaunch.images.plan import Plan, State
from relaunch.images.registry import split_uri
from relaunch.images.stack import load_stack

from .conftest import config_at, write
from .fakes import FakeGoogle


@pytest.fixture
def project(seeds: Path, fake_google: FakeGoogle) -> Path:
    with (seeds / "relaunch.toml").open("a") as f:
        f.write(f'[gcp.endpoints]\nartifactregistry = "{fake_google.url}"\n')
    return seeds


def states(plan: Plan) -> dict[str, str]:
    return {it.name: it.state.value for it in plan.items}


def publish(plan: Plan, fake: FakeGoogle, names: list[str] | None = None) -> None:
    """As if these images had been built and pushed here."""
    for it in plan.items:
        if names is None or it.name in names:
            _, path, tag = split_uri(it.uri)
            fake.state.manifests.add(f"{path}:{tag}")
            save_record(plan.stack, BuildRecord(it.fingerprint, pushed=True, builder="test"))


def test_fresh_project_nothing_in_registry(project: Path, fake_google: FakeGoogle) -> None:
    plan = plan_images(config_at(project))
    assert set(states(plan).values()) == {"not in registry"}
    heads = [r for r in fake_google.state.requests if r.startswith("HEAD /v2/")]
    assert len(heads) == 4
    assert heads[0].startswith("HEAD /v2/proj/arr-coc-registry/arr-pytorch-base/manifests/")


def test_a_tag_a_teammate_pushed_is_up_to_date(project: Path, fake_google: FakeGoogle) -> None:
    plan = plan_images(config_at(project))
    for it in plan.items:  # in the registry, but never built on this machine
        _, path, tag = split_uri(it.uri)
        fake_google.state.manifests.add(f"{path}:{tag}")
    again = plan_images(config_at(project))
    assert set(states(again).values()) == {"up to date"}
    assert again.to_build() == []


def test_changed_inputs_are_named(project: Path, fake_google: FakeGoogle) -> None:
    publish(plan_images(config_at(project)), fake_google)
    (project / "ARR_COC/model.py").write_text("class Model: v2 = True\n")
    write(project, "ARR_COC/new.py", "")
    (project / "ARR_COC/__init__.py").unlink()
    plan = plan_images(config_at(project))
    assert states(plan) == {
        "arr-pytorch-base": "up to date",
        "arr-ml-stack": "up to date",
        "arr-trainer": "inputs changed",
        "arr-vertex-launcher": "up to date",
    }
    assert plan.item("arr-trainer").changes == [
        "-ARR_COC/__init__.py",
        "ARR_COC/model.py",
        "+ARR_COC/new.py",
    ]


def test_parent_change_cascades(project: Path, fake_google: FakeGoogle) -> None:
    publish(plan_images(config_at(project)), fake_google)
    df = project / "Stack/arr-pytorch-base/Dockerfile"
    df.write_text(df.read_text() + "RUN echo new cuda\n")
    plan = plan_images(config_at(project))
    assert states(plan) == {
        "arr-pytorch-base": "inputs changed",
        "arr-ml-stack": "parent changed",
        "arr-trainer": "parent changed",
        "arr-vertex-launcher": "up to date",
    }
    assert plan.item("arr-pytorch-base").changes == [
        "Dockerfile",
        "Stack/arr-pytorch-base/Dockerfile",  # it is also a file of its context
    ]
    base_tag = plan.item("arr-pytorch-base").tag
    assert plan.item("arr-ml-stack").changes == [f"arr-pytorch-base:{base_tag}"]
    assert [it.name for it in plan.to_build(["arr-ml-stack"])] == [
        "arr-pytorch-base",
        "arr-ml-stack",
    ]


def test_offline_plan_trusts_local_records(project: Path, fake_google: FakeGoogle) -> None:
    plan = plan_images(config_at(project), offline=True)
    publish(plan, fake_google, ["arr-vertex-launcher"])
    fake_google.state.requests.clear()
    again = plan_images(config_at(project), offline=True)
    assert again.item("arr-vertex-launcher").state is State.UP_TO_DATE
    assert again.item("arr-trainer").state is State.NOT_BUILT  # offline: no registry asked
    assert fake_google.state.requests == []


def test_registry_refusal_is_unknown_and_blocks_builds(
    project: Path, fake_google: FakeGoogle
) -> None:
    fake_google.state.registry_status = 403
    plan = plan_images(config_at(project))
    assert set(states(plan).values()) == {"unknown"}
    assert "roles/artifactregistry.reader" in (plan.items[0].note or "")
    heads = [r for r in fake_google.state.requests if r.startswith("HEAD")]
    assert len(heads) == 1, "a refusing registry is asked once, not once per image"
    with pytest.raises(UserInputError, match="cannot tell whether"):
        build_images(config_at(project), plan=plan, dry_run=True)


def test_plan_of_unknown_name_suggests(project: Path) -> None:
    from relaunch.errors import SpecError

    with pytest.raises(SpecError, match="did you mean 'arr-trainer'"):
        plan_images(config_at(project), ["arr-traner"])


def test_no_repository_plans_locally(tmp_path: Path) -> None:
    write(tmp_path, "Dockerfile", "FROM debian\n")
    write(tmp_path, "relaunch.toml", '[images.app]\ndockerfile = "Dockerfile"\n')
    plan = plan_images(config_at(tmp_path))
    item = plan.item("app")
    assert item.uri == f"app:{item.tag}"
    assert item.state is State.NOT_BUILT and item.in_registry is None
    assert item.note == "no repository configured"
    assert load_stack(config_at(tmp_path)).images["app"].repository is None


def test_a_dockerfile_without_from_is_refused_at_plan_time(tmp_path: Path) -> None:
    write(tmp_path, "Dockerfile", "RUN echo hello\n")
    write(tmp_path, "relaunch.toml", '[images.app]\ndockerfile = "Dockerfile"\n')
    with pytest.raises(SpecError, match="has no FROM line"):
        plan_images(config_at(tmp_path))
