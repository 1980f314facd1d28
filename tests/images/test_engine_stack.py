"""The seeds' stack built and pushed for real: Debian's dockerd (BuildKit in the engine,
no buildx plugin) and Debian's docker-registry on 127.0.0.1, both started by the
session's fixtures. What a user would check: the order of builds, what `plan` says
after, which images an edit rebuilds, what is inside the images, where a secret is not."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from relaunch.images.build import plan_images
from relaunch.images.plan import State

from .busybox_stack import make_busybox_stack
from .conftest import config_at
from .engine import Engine, LocalRegistry
from .test_cli import SRC

ORDER = ["arr-pytorch-base", "arr-ml-stack", "arr-trainer", "arr-vertex-launcher"]
SECRET = "hf_s3cr3t-" + uuid.uuid4().hex


def relaunch_images(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relaunch.cli.main", "images", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC, "COLUMNS": "200"},
        timeout=900,
    )


@pytest.fixture
def stack(
    tmp_path: Path, engine: Engine, local_registry: LocalRegistry, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    repo = local_registry.repository(f"t{uuid.uuid4().hex[:8]}")
    return make_busybox_stack(tmp_path / "proj", repo)


def states(root: Path) -> dict[str, State]:
    return {it.name: it.state for it in plan_images(config_at(root)).items}


def built_names(stderr: str) -> list[str]:
    return [
        line.split("] ", 1)[1].split(":", 1)[0]
        for line in stderr.splitlines()
        if line.startswith("[") and " built" in line
    ]


def run_in(engine: Engine, uri: str, *cmd: str) -> str:
    done = engine.docker("run", "--rm", "--network", "none", uri, *cmd)
    assert done.returncode == 0, done.stderr
    return str(done.stdout)


def test_build_push_builds_parents_first_then_plan_is_up_to_date(
    stack: Path, engine: Engine, local_registry: LocalRegistry
) -> None:
    assert set(states(stack).values()) == {State.NOT_IN_REGISTRY}
    done = relaunch_images(stack, "build", "--push", "--builder", "docker")
    assert done.returncode == 0, done.stderr
    names = built_names(done.stderr)
    assert sorted(names) == sorted(ORDER)
    for parent, child in [(0, 1), (1, 2)]:
        assert names.index(ORDER[parent]) < names.index(ORDER[child])
    plan = plan_images(config_at(stack))
    for it in plan.items:  # asked of the real registry, over plain http on loopback
        assert it.state is State.UP_TO_DATE and it.in_registry is True, it.name
        assert local_registry.has(it.uri.split("/", 1)[1].rsplit(":", 1)[0], it.tag)
    again = relaunch_images(stack, "plan")
    assert again.returncode == 0 and again.stdout.count("up to date") == 4, again.stdout
    nothing = relaunch_images(stack, "build", "--push", "--builder", "docker")
    assert nothing.returncode == 0 and "every image is up to date" in nothing.stderr
    # the trainer was built FROM the ml-stack just built, itself FROM the base
    trainer = plan.item("arr-trainer").uri
    assert run_in(engine, trainer, "cat", "/etc/ml-stack") == "torch 2.4\ntransformers==4.44\n"


def test_an_input_edit_rebuilds_that_image_and_its_children_only(stack: Path) -> None:
    assert relaunch_images(stack, "build", "--push", "--builder", "docker").returncode == 0
    (stack / "Stack/arr-ml-stack/requirements.txt").write_text("transformers==4.45\n")
    assert states(stack) == {
        "arr-pytorch-base": State.UP_TO_DATE,
        "arr-ml-stack": State.INPUTS_CHANGED,
        "arr-trainer": State.PARENT_CHANGED,
        "arr-vertex-launcher": State.UP_TO_DATE,
    }
    done = relaunch_images(stack, "build", "--push", "--builder", "docker")
    assert done.returncode == 0, done.stderr
    assert built_names(done.stderr) == ["arr-ml-stack", "arr-trainer"]
    assert set(states(stack).values()) == {State.UP_TO_DATE}


def test_editing_the_parent_declared_without_default_moves_the_child(stack: Path) -> None:
    """``ARG BASE_IMAGE`` with no default: the parent comes from the .image-manifest."""
    plan = plan_images(config_at(stack))
    assert plan.item("arr-ml-stack").image.parent == "arr-pytorch-base"
    before = {it.name: it.tag for it in plan.items}
    (stack / "Stack/arr-pytorch-base/version").write_text("torch 2.5\n")
    after = {it.name: it.tag for it in plan_images(config_at(stack)).items}
    changed = sorted(n for n in before if before[n] != after[n])
    assert changed == ["arr-ml-stack", "arr-pytorch-base", "arr-trainer"]


def test_no_unhashed_file_reaches_the_image_and_the_dockerignore_holds(
    stack: Path, engine: Engine
) -> None:
    done = relaunch_images(stack, "build", "arr-trainer", "--builder", "docker")
    assert done.returncode == 0, done.stderr
    uri = plan_images(config_at(stack), offline=True).item("arr-trainer").uri
    files = sorted(run_in(engine, uri, "find", "/app", "-type", "f").split())
    # COPY . /app got the trainer's inputs less its dockerignore, and its Dockerfile:
    # never relaunch.toml, CLI/, the other images' folders, nor ARR_COC/README.md (the
    # dockerignore lets it through, but the tag does not cover it)
    assert files == [
        "/app/ARR_COC/Training/train.py",
        "/app/ARR_COC/__init__.py",
        "/app/ARR_COC/model.py",
        "/app/Stack/arr-trainer/Dockerfile",
        "/app/Stack/arr-trainer/pyproject.toml",
    ]
    # ARR_COC/experimental/draft.py is an input (its edits move the tag) the
    # dockerignore keeps out of the image; editing the dockerignore moves the tag too
    tag = plan_images(config_at(stack), offline=True).item("arr-trainer").tag
    ignore = stack / "Stack/arr-trainer/Dockerfile.dockerignore"
    ignore.write_text(ignore.read_text().replace("ARR_COC/experimental\n", ""))
    item = plan_images(config_at(stack), offline=True).item("arr-trainer")
    assert item.tag != tag and item.changes == ["dockerignore"]
    assert relaunch_images(stack, "build", "arr-trainer", "--builder", "docker").returncode == 0
    files = run_in(engine, item.uri, "find", "/app", "-type", "f").split()
    assert "/app/ARR_COC/experimental/draft.py" in files


def test_a_build_secret_reaches_the_run_step_and_nothing_else(
    stack: Path, engine: Engine, tmp_path: Path
) -> None:
    done = relaunch_images(stack, "build", "arr-trainer", "--push", "--builder", "docker")
    assert done.returncode == 0, done.stderr
    item = plan_images(config_at(stack)).item("arr-trainer")
    seen = run_in(engine, item.uri, "cat", "/etc/hf_token.sha256").strip()
    assert seen == hashlib.sha256(SECRET.encode()).hexdigest(), "the RUN step read it"
    secret = SECRET.encode()
    saved = engine.docker("save", item.uri, binary=True)
    assert saved.returncode == 0 and len(saved.stdout) > 100_000
    assert secret not in saved.stdout, "in no layer nor config of the image"
    for args in (["history", "--no-trunc", item.uri], ["inspect", item.uri]):
        out = engine.docker(*args)
        assert out.returncode == 0 and SECRET not in out.stdout, args
    assert SECRET not in item.uri and SECRET not in done.stdout + done.stderr
    for p in (stack / ".relaunch").rglob("*"):  # logs, records, context tarballs
        assert not p.is_file() or secret not in p.read_bytes(), p


def test_a_failing_run_is_a_build_failure_with_its_last_lines(stack: Path) -> None:
    dockerfile = stack / "Stack/arr-vertex-launcher/Dockerfile"
    dockerfile.write_text(
        dockerfile.read_text() + "RUN echo fetching weights; echo weights.bin missing >&2; exit 3\n"
    )
    done = relaunch_images(stack, "build", "arr-vertex-launcher", "--push", "--builder", "docker")
    assert done.returncode == 1
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("error: build of arr-vertex-launcher:"), done.stderr
    assert "exit code: 3" in error and "fix the Dockerfile" in error
    assert "gcloud auth" not in done.stderr and "registry" not in error
    tail = done.stderr.split("the failing step's last lines:", 1)[1]
    assert "fetching weights" in tail and "weights.bin missing" in tail


def test_a_retried_build_has_its_own_log(stack: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dockerfile = stack / "Stack/arr-trainer/Dockerfile"
    dockerfile.write_text(
        dockerfile.read_text()
        + 'RUN --mount=type=secret,id=hf_token test "$(cat /run/secrets/hf_token)" != wrong\n'
    )
    monkeypatch.setenv("HF_TOKEN", "wrong")
    first = relaunch_images(stack, "build", "arr-trainer", "--builder", "docker")
    assert first.returncode == 1 and "build of arr-trainer:" in first.stderr
    item = plan_images(config_at(stack), offline=True).item("arr-trainer")
    log = stack / ".relaunch/images/logs" / f"arr-trainer-{item.tag}.log"
    assert "ERROR" in log.read_text()
    monkeypatch.setenv("HF_TOKEN", SECRET)  # same inputs, same tag: the same log file
    second = relaunch_images(stack, "build", "arr-trainer", "--builder", "docker")
    assert second.returncode == 0, second.stderr
    text = log.read_text()
    assert "ERROR" not in text and "exit code" not in text
    assert text.startswith("relaunch: docker ")


def test_plan_json_reports_registry_state_per_image(stack: Path) -> None:
    done = relaunch_images(stack, "plan", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["image"] for r in rows] == ORDER
    assert {r["in_registry"] for r in rows} == {False}
