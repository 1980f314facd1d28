"""Which way the local Docker can build with BuildKit, asked once per build:

- ``buildx``: the ``docker buildx`` plugin answers (``docker buildx build``);
- ``engine``: no plugin, but the CLI is older than 23, whose ``docker build`` still has
  BuildKit built in (``DOCKER_BUILDKIT=1``): Debian's and Ubuntu's ``docker.io`` 20.10;
- otherwise nothing can build: a CLI from 23 on hands every BuildKit build to buildx, and
  its legacy builder knows neither ``--secret`` nor per-Dockerfile dockerignore files.

A missing CLI, an engine that does not answer and a missing buildx are told apart, each
in one line that says what to install or start.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass

from relaunch.errors import BackendError

BUILDX = "buildx"
ENGINE = "engine"
_PROBE_TIMEOUT = 30.0


def docker_executable() -> str:
    return os.environ.get("RELAUNCH_DOCKER", "docker")


@dataclass(frozen=True)
class DockerTools:
    """A docker CLI that can build: its path, versions and way of building."""

    exe: str
    client_version: str
    server_version: str
    mode: str  # BUILDX or ENGINE


def _run(argv: list[str]) -> tuple[int, str, str]:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=_PROBE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return 124, "", f"no answer within {int(_PROBE_TIMEOUT)}s"
    except OSError as e:
        return 127, "", str(e)
    return (
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _major(version: str) -> int:
    digits = version.split(".", 1)[0]
    return int(digits) if digits.isdigit() else 0


def engine_problem(detail: str) -> BackendError:
    where = os.environ.get("DOCKER_HOST") or "the default socket"
    if "permission denied" in detail.lower():
        return BackendError(
            f"the Docker engine at {where} refuses this user: {detail}",
            reason="permission",
            hint="add this user to the docker group (then log in again), or build with "
            "--builder cloudbuild",
        )
    return BackendError(
        f"no Docker engine answers at {where}: {detail}",
        reason="transient",
        hint="start the Docker daemon (or set DOCKER_HOST to one that runs), "
        "or build with --builder cloudbuild",
    )


def probe(docker: str | None = None) -> DockerTools:
    """The local docker's way to build, or a BackendError that says what is missing."""
    name = docker or docker_executable()
    exe = shutil.which(name)
    if exe is None:
        raise BackendError(
            f"'{name}' not found on PATH, so nothing can build locally",
            reason="user-error",
            hint="install Docker (Debian/Ubuntu: apt-get install docker.io), set "
            "RELAUNCH_DOCKER to its path, or build with --builder cloudbuild",
        )
    rc, out, err = _run([exe, "version", "--format", "{{json .}}"])
    try:
        doc = json.loads(_first_line(out) or "{}")
    except ValueError:
        doc = {}
    client = str((doc.get("Client") or {}).get("Version") or "")
    server = str((doc.get("Server") or {}).get("Version") or "")
    if not client:
        raise BackendError(
            f"{exe} does not behave like the docker CLI ({_first_line(err) or f'exit {rc}'})",
            reason="user-error",
            hint="set RELAUNCH_DOCKER to the docker CLI's path",
        )
    if rc != 0 or not server:
        raise engine_problem(_first_line(err) or "no server version")
    brc, _, _ = _run([exe, "buildx", "version"])
    if brc == 0:
        return DockerTools(exe, client, server, BUILDX)
    if _major(client) < 23:
        return DockerTools(exe, client, server, ENGINE)
    raise BackendError(
        f"docker CLI {client} ({exe}) has no buildx plugin, and from Docker 23 on "
        "`docker build` needs it for BuildKit (build secrets, per-Dockerfile dockerignore)",
        reason="user-error",
        hint="install the buildx plugin (docker-buildx-plugin or docker-buildx), or set "
        "RELAUNCH_DOCKER to a docker CLI older than 23 (Debian's docker.io 20.10)",
    )


def engine_reachable(docker: str | None = None) -> bool:
    """Whether a local docker can build here (CLI found, engine answers, BuildKit usable)."""
    try:
        probe(docker)
    except BackendError:
        return False
    return True
