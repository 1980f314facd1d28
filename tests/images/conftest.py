from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaunch.spec.loader import load_project
from relaunch.spec.project import ProjectConfig

from .engine import Engine, LocalRegistry, running_engine, running_registry, skip_reason
from .fakes import FakeGoogle


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text))
    return p


def git(root: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    done = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout


def commit_all(root: Path) -> None:
    if not (root / ".git").exists():
        git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "snapshot", "--allow-empty")


SEEDS_STACK = {
    "Stack/arr-pytorch-base/Dockerfile": "FROM nvidia/cuda:12.4.1-devel-ubuntu22.04\n"
    "RUN echo compile torch\n",
    "Stack/arr-pytorch-base/Dockerfile.dockerignore": "*\n!Stack/arr-pytorch-base\n",
    "Stack/arr-ml-stack/Dockerfile.dockerignore": "*\n!Stack/arr-ml-stack\n",
    "Stack/arr-ml-stack/requirements.txt": "transformers==4.44\n",
    "Stack/arr-ml-stack/Dockerfile": "ARG BASE_IMAGE=arr-pytorch-base:latest\n"
    "FROM ${BASE_IMAGE}\nRUN pip install transformers\n",
    "Stack/arr-trainer/Dockerfile": "ARG BASE_IMAGE=arr-ml-stack\nFROM $BASE_IMAGE\n"
    "COPY ARR_COC /app/ARR_COC\n",
    "Stack/arr-trainer/.image-manifest": "# files that trigger a rebuild\n"
    "Stack/arr-trainer/Dockerfile\nStack/arr-trainer/pyproject.toml\nARR_COC/**/*.py\n",
    "Stack/arr-trainer/pyproject.toml": "[project]\nname='arr'\n",
    "Stack/arr-trainer/Dockerfile.dockerignore": "*\n!ARR_COC\n!Stack/arr-trainer/pyproject.toml\n"
    "**/__pycache__\n",
    "Stack/arr-vertex-launcher/Dockerfile": "FROM python:3.10-slim\n"
    "COPY Stack/arr-vertex-launcher/ /opt/launcher/\n",
    "Stack/arr-vertex-launcher/Dockerfile.dockerignore": "*\n!Stack/arr-vertex-launcher\n",
    "Stack/arr-vertex-launcher/entrypoint-wrapper.sh": '#!/bin/sh\nexec "$@"\n',
    "ARR_COC/__init__.py": "",
    "ARR_COC/model.py": "class Model: ...\n",
    "ARR_COC/Training/train.py": "print('train')\n",
    "ARR_COC/README.md": "docs\n",
    "CLI/cli.py": "print('cli')\n",
}


def make_seeds_project(root: Path, toml: str = "") -> Path:
    for rel, text in SEEDS_STACK.items():
        write(root, rel, text)
    os.chmod(root / "Stack/arr-vertex-launcher/entrypoint-wrapper.sh", 0o755)
    write(
        root,
        "relaunch.toml",
        '[image_stack]\nrepository = "us-central1-docker.pkg.dev/proj/arr-coc-registry"\n' + toml,
    )
    return root


def config_at(root: Path) -> ProjectConfig:
    return load_project(root / "relaunch.toml")


@pytest.fixture
def seeds(tmp_path: Path) -> Path:
    root = make_seeds_project(tmp_path / "proj")
    commit_all(root)
    return root


@pytest.fixture
def fake_google() -> Iterator[FakeGoogle]:
    fake = FakeGoogle().start()
    try:
        yield fake
    finally:
        fake.stop()


FAKE_DOCKER = """\
#!{python}
import json, hashlib, os, sys
record = os.environ["FAKE_DOCKER_RECORD"]
if sys.argv[1:2] == ["version"]:  # the engine probe: client, and server unless "no engine"
    doc = {{"Client": {{"Version": os.environ.get("FAKE_DOCKER_CLIENT", "27.1.0")}}}}
    if os.environ.get("FAKE_DOCKER_INFO_RC", "0") == "0":
        doc["Server"] = {{"Version": "27.1.0"}}
    print(json.dumps(doc))
    sys.exit(int(os.environ.get("FAKE_DOCKER_INFO_RC", "0")))
if sys.argv[1:3] == ["buildx", "version"]:
    sys.exit(int(os.environ.get("FAKE_DOCKER_BUILDX_RC", "0")))
data = sys.stdin.buffer.read() if sys.argv[-1] == "-" else b""
argv = sys.argv[1:]
secret_vars = [a.split(",env=")[1] for a in argv if a.startswith("id=") and ",env=" in a]
seen = {{v: hashlib.sha256(os.environ[v].encode()).hexdigest() for v in secret_vars
        if v in os.environ}}
with open(record, "a") as f:
    f.write(json.dumps({{"argv": argv, "stdin_sha256": hashlib.sha256(data).hexdigest(),
                        "stdin_len": len(data), "secret_sha256": seen}}) + "\\n")
print("#1 [internal] load build definition")
print("#2 DONE 0.1s")
sys.exit(int(os.environ.get("FAKE_DOCKER_RC", "0")))
"""


def docker_builds(record: Path) -> list[list[str]]:
    """The argv of each build the fake docker ran."""
    if not record.exists():
        return []
    argvs = [json.loads(x)["argv"] for x in record.read_text().splitlines()]
    return [a for a in argvs if a[0] != "push"]


def docker_pushes(record: Path) -> list[str]:
    """The image of each ``docker push`` the fake docker ran."""
    if not record.exists():
        return []
    argvs = [json.loads(x)["argv"] for x in record.read_text().splitlines()]
    return [a[1] for a in argvs if a[0] == "push"]


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `docker` on PATH that records each build or push call's argv (one JSON line per
    call). It stands in for the buildx plugin, which this machine does not have; the
    real engine's tests are in test_engine_*.py."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "docker"
    exe.write_text(FAKE_DOCKER.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    record = tmp_path / "docker-calls.jsonl"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DOCKER_RECORD", str(record))
    monkeypatch.delenv("RELAUNCH_DOCKER", raising=False)
    return record


# -- a real Docker engine and registry (tests/images/engine.py) ------------------------


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A real dockerd for the whole session (skips only without root or dockerd)."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with running_engine(tmp_path_factory.mktemp("dockerd")) as engine:
        yield engine


@pytest.fixture(scope="session")
def local_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A real registry on 127.0.0.1 (plain http, no auth) for the whole session."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with running_registry(tmp_path_factory.mktemp("registry")) as registry:
        yield registry


@pytest.fixture
def engine(docker_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """The real engine, as relaunch's docker builder will reach it in this test."""
    monkeypatch.setenv("DOCKER_HOST", docker_engine.host)
    monkeypatch.setenv("RELAUNCH_DOCKER", docker_engine.cli)
    return docker_engine
