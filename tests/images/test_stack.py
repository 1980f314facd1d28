"""Stack discovery, validation errors (one line naming the file) and build order."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaunch.errors import SpecError
from relaunch.images.fingerprint import fingerprints
from relaunch.images.plan import make_plan
from relaunch.images.stack import load_stack
from relaunch.spec.loader import load_project

from .conftest import config_at, write


def test_seeds_layout_is_discovered_with_parents_from_from(seeds: Path) -> None:
    stack = load_stack(config_at(seeds))
    assert stack.order == ["arr-pytorch-base", "arr-ml-stack", "arr-trainer", "arr-vertex-launcher"]
    trainer = stack.images["arr-trainer"]
    assert trainer.parent == "arr-ml-stack" and trainer.parent_arg == "BASE_IMAGE"
    assert stack.images["arr-ml-stack"].parent == "arr-pytorch-base"
    assert stack.images["arr-vertex-launcher"].parent is None
    assert trainer.inputs == (
        "Stack/arr-trainer/Dockerfile",
        "Stack/arr-trainer/pyproject.toml",
        "ARR_COC/**/*.py",
    )
    assert trainer.dockerignore == seeds / "Stack/arr-trainer/Dockerfile.dockerignore"
    assert trainer.context == seeds
    assert stack.images["arr-trainer"].uri("abc") == (
        "us-central1-docker.pkg.dev/proj/arr-coc-registry/arr-trainer:abc"
    )


def test_trainer_inputs_are_the_manifest_files(seeds: Path) -> None:
    fp = fingerprints(load_stack(config_at(seeds)), ["arr-trainer"])["arr-trainer"]
    assert sorted(fp.files) == [
        "ARR_COC/Training/train.py",
        "ARR_COC/__init__.py",
        "ARR_COC/model.py",
        "Stack/arr-trainer/Dockerfile",
        "Stack/arr-trainer/pyproject.toml",
    ]


def four_levels(root: Path, *, parent_of_a: str | None = None) -> Path:
    chain = ["a", "b", "c", "d"]
    toml = ""
    for i, name in enumerate(chain):
        parent = chain[i - 1] if i else parent_of_a
        body = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n" if parent else "FROM debian\n"
        write(root, f"{name}/Dockerfile", body + f"RUN echo {name}\n")
        toml += f'[images.{name}]\ndockerfile = "{name}/Dockerfile"\ncontext = "{name}"\n'
        toml += f'parent = "{parent}"\n' if parent else ""
    # declared out of order on purpose, plus an unrelated image
    write(root, "z/Dockerfile", "FROM alpine\n")
    toml += '[images.z]\ndockerfile = "z/Dockerfile"\ncontext = "z"\n'
    write(root, "relaunch.toml", toml)
    return root


def test_plan_order_on_a_four_level_stack(tmp_path: Path) -> None:
    stack = load_stack(config_at(four_levels(tmp_path)))
    plan = make_plan(stack, registry=None)
    assert [it.name for it in plan.items] == ["a", "b", "c", "d", "z"]
    assert [it.name for it in plan.to_build(["c"])] == ["a", "b", "c"]
    assert [it.fingerprint.parent_tag for it in plan.items[1:4]] == [
        plan.items[0].tag,
        plan.items[1].tag,
        plan.items[2].tag,
    ]


def test_order_puts_parents_first_whatever_the_names(tmp_path: Path) -> None:
    for name, parent in [("aaa", "zzz"), ("zzz", "mmm"), ("mmm", None)]:
        body = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n" if parent else "FROM debian\n"
        write(tmp_path, f"{name}/Dockerfile", body)
    write(
        tmp_path,
        "relaunch.toml",
        '[images.aaa]\ndockerfile = "aaa/Dockerfile"\nparent = "zzz"\n'
        '[images.zzz]\ndockerfile = "zzz/Dockerfile"\nparent = "mmm"\n'
        '[images.mmm]\ndockerfile = "mmm/Dockerfile"\n',
    )
    assert load_stack(config_at(tmp_path)).order == ["mmm", "zzz", "aaa"]


def test_parent_cycle_is_one_line_naming_the_cycle(tmp_path: Path) -> None:
    four_levels(tmp_path, parent_of_a="d")
    with pytest.raises(SpecError) as e:
        load_stack(config_at(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg
    # each arrow reads "is built FROM"
    assert "relaunch.toml [images.a]" in msg and "parent cycle a → d → c → b → a" in msg


def test_unknown_parent(tmp_path: Path) -> None:
    write(tmp_path, "Dockerfile", "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    write(tmp_path, "relaunch.toml", '[images.app]\ndockerfile = "Dockerfile"\nparent = "bse"\n')
    with pytest.raises(SpecError, match=r"\[images.app\]: parent 'bse' is not an image"):
        load_stack(config_at(tmp_path))


def test_missing_dockerfile_names_the_file(tmp_path: Path) -> None:
    write(tmp_path, "relaunch.toml", '[images.app]\ndockerfile = "docker/Dockerfile"\n')
    with pytest.raises(SpecError, match=r"Dockerfile not found: docker/Dockerfile"):
        load_stack(config_at(tmp_path))


def test_glob_matching_nothing_names_the_manifest(seeds: Path) -> None:
    with (seeds / "Stack/arr-trainer/.image-manifest").open("a") as f:
        f.write("ARR_COC/**/*.pyx\n")
    with pytest.raises(SpecError) as e:
        fingerprints(load_stack(config_at(seeds)))
    assert "Stack/arr-trainer/.image-manifest" in str(e.value)
    assert "'ARR_COC/**/*.pyx' matches no file" in str(e.value)


def test_declared_glob_matching_nothing_names_relaunch_toml(tmp_path: Path) -> None:
    write(tmp_path, "Dockerfile", "FROM debian\n")
    write(tmp_path, "relaunch.toml", '[images.app]\ndockerfile = "Dockerfile"\ninputs = ["sr/*"]\n')
    with pytest.raises(SpecError, match=r"\[images.app\].inputs: input glob 'sr/\*'"):
        fingerprints(load_stack(config_at(tmp_path)))


def test_parent_declared_but_dockerfile_ignores_it(tmp_path: Path) -> None:
    write(tmp_path, "base/Dockerfile", "FROM debian\n")
    write(tmp_path, "app/Dockerfile", "FROM base:latest\n")
    write(
        tmp_path,
        "relaunch.toml",
        '[images.base]\ndockerfile = "base/Dockerfile"\n'
        '[images.app]\ndockerfile = "app/Dockerfile"\nparent = "base"\n',
    )
    with pytest.raises(SpecError, match=r"app/Dockerfile: never uses build arg BASE_IMAGE"):
        load_stack(config_at(tmp_path))


def test_discovered_literal_from_of_a_stack_image_is_refused(seeds: Path) -> None:
    write(seeds, "Stack/arr-trainer/Dockerfile", "FROM us-docker.pkg.dev/p/r/arr-ml-stack:latest\n")
    with pytest.raises(SpecError, match=r"Stack/arr-trainer/Dockerfile:1: FROM .* 'arr-ml-stack'"):
        load_stack(config_at(seeds))


def test_bad_image_name_and_unknown_field_are_spec_errors(tmp_path: Path) -> None:
    write(tmp_path, "relaunch.toml", '[images.Trainer]\ndockerfile = "D"\n')
    with pytest.raises(SpecError, match="not a valid image name"):
        load_project(tmp_path / "relaunch.toml")
    write(tmp_path, "relaunch.toml", '[images.t]\ndockerfile = "D"\nparnet = "x"\n')
    with pytest.raises(SpecError, match=r"unknown field 'images\.t\.parnet'"):
        load_project(tmp_path / "relaunch.toml")


NO_DEFAULT = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN true\n"


def test_a_parent_without_default_is_found_in_the_manifest(seeds: Path) -> None:
    """The seeds' trainer: `ARG BASE_IMAGE` with no default, and its .image-manifest
    lists the parent's Dockerfile."""
    write(seeds, "Stack/arr-trainer/Dockerfile", NO_DEFAULT)
    write(
        seeds,
        "Stack/arr-trainer/.image-manifest",
        "Stack/arr-trainer/Dockerfile\nStack/arr-ml-stack/Dockerfile\nARR_COC/**/*.py\n",
    )
    stack = load_stack(config_at(seeds))
    trainer = stack.images["arr-trainer"]
    assert trainer.parent == "arr-ml-stack" and trainer.parent_arg == "BASE_IMAGE"
    before = fingerprints(stack)["arr-trainer"].tag
    write(seeds, "Stack/arr-pytorch-base/Dockerfile", "FROM scratch\nRUN echo changed\n")
    assert fingerprints(load_stack(config_at(seeds)))["arr-trainer"].tag != before


def test_a_parent_without_default_and_not_in_the_manifest_is_refused(seeds: Path) -> None:
    write(seeds, "Stack/arr-trainer/Dockerfile", NO_DEFAULT)
    with pytest.raises(SpecError) as e:
        load_stack(config_at(seeds))
    message = str(e.value)
    assert message.startswith(
        "Stack/arr-trainer/Dockerfile:2: FROM ${BASE_IMAGE} has no default for BASE_IMAGE"
    )
    assert "write `ARG BASE_IMAGE=<parent image>`" in message
    assert "Stack/arr-trainer/.image-manifest" in message
    write(seeds, "Stack/arr-ml-stack/Dockerfile", NO_DEFAULT)  # and without any manifest
    write(seeds, "Stack/arr-trainer/Dockerfile", "FROM arr-ml-stack\n")
    with pytest.raises(SpecError, match=r"arr-ml-stack/Dockerfile:2: .* no default"):
        load_stack(config_at(seeds))


def test_a_manifest_naming_two_stack_dockerfiles_cannot_choose(seeds: Path) -> None:
    write(seeds, "Stack/arr-trainer/Dockerfile", NO_DEFAULT)
    write(
        seeds,
        "Stack/arr-trainer/.image-manifest",
        "Stack/arr-ml-stack/Dockerfile\nStack/arr-pytorch-base/Dockerfile\n",
    )
    with pytest.raises(SpecError, match="lists the Dockerfiles of arr-ml-stack, arr-pytorch-base"):
        load_stack(config_at(seeds))


def test_a_declared_image_without_parent_for_a_bare_from_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "Dockerfile", NO_DEFAULT)
    write(tmp_path, "relaunch.toml", '[images.app]\ndockerfile = "Dockerfile"\n')
    with pytest.raises(SpecError) as e:
        load_stack(config_at(tmp_path))
    assert str(e.value).startswith(
        "Dockerfile:2: FROM ${BASE_IMAGE} has no default for BASE_IMAGE, and relaunch.toml "
        "[images.app] sets neither parent nor args.BASE_IMAGE"
    )
    write(
        tmp_path,
        "relaunch.toml",
        '[images.app]\ndockerfile = "Dockerfile"\nargs = {BASE_IMAGE = "debian:12"}\n',
    )
    assert load_stack(config_at(tmp_path)).images["app"].parent is None
