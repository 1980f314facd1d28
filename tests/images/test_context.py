"""The build context tarball: deterministic bytes, Docker's file set, tag-consistent."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from relaunch.errors import UserInputError
from relaunch.images.context import write_context
from relaunch.images.fingerprint import fingerprints
from relaunch.images.stack import load_stack

from .conftest import commit_all, config_at, git, make_seeds_project


def tarball(root: Path, name: str, dest: Path) -> bytes:
    stack = load_stack(config_at(root))
    fp = fingerprints(stack, [name])[name]
    return write_context(stack, stack.images[name], fp, dest).path.read_bytes()


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def test_tarball_is_byte_identical_across_two_checkouts(seeds: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere" / "clone"
    other.parent.mkdir()
    # the checkouts differ in everything but content: path, times, inodes, permissions
    old = os.umask(0o077)
    try:
        git(other.parent, "clone", "-q", str(seeds), str(other))
    finally:
        os.umask(old)
    assert (other / "ARR_COC/model.py").stat().st_mode & 0o777 == 0o600
    for p in other.rglob("*"):
        if p.is_file() and ".git" not in p.parts:
            os.utime(p, (1_000_000, 1_000_000))
    for name in ("arr-trainer", "arr-vertex-launcher", "arr-pytorch-base"):
        a = tarball(seeds, name, tmp_path / "a" / f"{name}.tar.gz")
        b = tarball(other, name, tmp_path / "b" / f"{name}.tar.gz")
        assert a == b, name
        assert a[4:8] == b"\0\0\0\0", "gzip header carries no time"


def test_tarball_holds_the_hashed_files_with_normalised_metadata(
    seeds: Path, tmp_path: Path
) -> None:
    m = members(tarball(seeds, "arr-trainer", tmp_path / "t.tar.gz"))
    files = sorted(n for n, i in m.items() if i.isfile())
    # the manifest's inputs that the dockerignore lets through, and the Dockerfile: not
    # ARR_COC/README.md, which the dockerignore lets through but the tag does not cover
    assert files == [
        "ARR_COC/Training/train.py",
        "ARR_COC/__init__.py",
        "ARR_COC/model.py",
        "Stack/arr-trainer/Dockerfile",
        "Stack/arr-trainer/pyproject.toml",
    ]
    assert list(m) == sorted(m), "entries are sorted"
    for info in m.values():
        assert (info.mtime, info.uid, info.gid, info.uname, info.gname) == (0, 0, 0, "", "")
    launcher = members(tarball(seeds, "arr-vertex-launcher", tmp_path / "l.tar.gz"))
    assert launcher["Stack/arr-vertex-launcher/entrypoint-wrapper.sh"].mode == 0o755
    assert launcher["Stack/arr-vertex-launcher/Dockerfile"].mode == 0o644


def test_symlinks_are_kept_as_links(tmp_path: Path) -> None:
    root = make_seeds_project(tmp_path / "p")
    (root / "Stack/arr-vertex-launcher/current").symlink_to("entrypoint-wrapper.sh")
    m = members(tarball(root, "arr-vertex-launcher", tmp_path / "l.tar.gz"))
    link = m["Stack/arr-vertex-launcher/current"]
    assert link.issym() and link.linkname == "entrypoint-wrapper.sh"


def test_a_file_edited_after_the_plan_fails_the_build(seeds: Path, tmp_path: Path) -> None:
    stack = load_stack(config_at(seeds))
    fp = fingerprints(stack, ["arr-vertex-launcher"])["arr-vertex-launcher"]
    (seeds / "Stack/arr-vertex-launcher/entrypoint-wrapper.sh").write_text("#!/bin/sh\nexit 9\n")
    image = stack.images["arr-vertex-launcher"]
    with pytest.raises(UserInputError, match=r"entrypoint-wrapper\.sh changed while"):
        write_context(stack, image, fp, tmp_path / "x.tar.gz")
    assert not (tmp_path / "x.tar.gz").exists()


@pytest.mark.parametrize(
    ("name", "edited"),
    [
        ("arr-trainer", "ARR_COC/model.py"),  # an input of a .image-manifest image
        ("arr-trainer", "Stack/arr-trainer/pyproject.toml"),
        ("arr-ml-stack", "Stack/arr-ml-stack/Dockerfile"),  # an image without inputs
    ],
)
def test_an_edit_between_plan_and_build_never_ships_under_the_old_tag(
    seeds: Path, fake_docker: Path, name: str, edited: str
) -> None:
    from relaunch.images.build import build_images, plan_images

    config = config_at(seeds)
    plan = plan_images(config, [name], offline=True)
    path = seeds / edited
    path.write_text(path.read_text() + "# edited after the plan\n")
    with pytest.raises(UserInputError, match=f"{edited} changed while"):
        build_images(config, [name], builder="docker", plan=plan)
    assert not fake_docker.exists() or name not in fake_docker.read_text()


def test_content_change_changes_the_tarball(seeds: Path, tmp_path: Path) -> None:
    a = tarball(seeds, "arr-trainer", tmp_path / "a.tar.gz")
    (seeds / "ARR_COC/model.py").write_text("changed\n")
    b = tarball(seeds, "arr-trainer", tmp_path / "b.tar.gz")
    assert a != b
    shutil.rmtree(seeds / ".relaunch")
    commit_all(seeds)
    assert tarball(seeds, "arr-trainer", tmp_path / "c.tar.gz") == b


def test_the_dockerfile_is_sent_even_when_ignored_and_executable(
    seeds: Path, tmp_path: Path
) -> None:
    folder = seeds / "Stack/arr-vertex-launcher"
    (folder / "Dockerfile.dockerignore").write_text(
        "*\n!Stack/arr-vertex-launcher\nStack/arr-vertex-launcher/Dockerfile*\n"
    )
    (folder / "Dockerfile").chmod(0o755)
    m = members(tarball(seeds, "arr-vertex-launcher", tmp_path / "l.tar.gz"))
    assert m["Stack/arr-vertex-launcher/Dockerfile"].mode == 0o755
    assert "Stack/arr-vertex-launcher/Dockerfile.dockerignore" not in m
