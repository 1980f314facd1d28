"""Builds on the local Docker engine with BuildKit: ``docker buildx build --load`` where
the buildx plugin is, else ``DOCKER_BUILDKIT=1 docker build`` on a CLI that still has
BuildKit built in (see :mod:`.engine`); then ``docker push`` when asked to push, so a
failed build and a refused push are told apart.

The context is relaunch's deterministic tarball on stdin, so the engine sees exactly the
files the tag was computed from. The argv is a list (no shell). Build args hold no
secrets: an image's ``secrets`` go to ``--secret id=ID,env=VAR``, so only the variable's
name is on the argv and in the log."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from relaunch.errors import BackendError
from relaunch.images.builders.base import BuildRequest, BuildResult, LogFile
from relaunch.images.builders.engine import (
    BUILDX,
    DockerTools,
    docker_executable,
    engine_reachable,
    probe,
)
from relaunch.images.builders.outcome import build_failure, push_failure

__all__ = ["DockerBuilder", "docker_executable", "engine_reachable", "secret_variable"]


def secret_variable(sid: str, ref: str) -> str:
    """The environment variable docker reads secret ``sid`` from: the named one for
    ``env:VAR``, else one relaunch fills from Secret Manager."""
    return ref[4:] if ref.startswith("env:") else f"RELAUNCH_BUILD_SECRET_{sid.upper()}"


def secret_environment(req: BuildRequest) -> dict[str, str]:
    """The docker process's environment: ours, plus the Secret Manager secrets' values
    (read now; they go nowhere else). A missing ``env:VAR`` is an error naming VAR."""
    env = dict(os.environ)
    for sid, ref in sorted(req.item.image.secrets.items()):
        if ref.startswith("env:"):
            if ref[4:] not in env:
                raise BackendError(
                    f"{req.item.image.source}: build secret '{sid}' reads ${ref[4:]}, which "
                    "is not set",
                    reason="user-error",
                    hint=f"export {ref[4:]} before building",
                )
            continue
        from relaunch.gcp.secrets import access_secret

        name = ref if "/versions/" in ref else f"{ref}/versions/latest"
        env[secret_variable(sid, ref)] = access_secret(name)
    return env


def _stream(
    argv: list[str], stdin: Path | None, env: dict[str, str], log: LogFile
) -> tuple[int, list[str]]:
    """Run ``argv``, every output line to the log; (exit code, the lines)."""
    lines: list[str] = []
    with open(stdin or os.devnull, "rb") as f:
        proc = subprocess.Popen(
            argv, stdin=f, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
        )
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(line)
            log.line(line)
        return proc.wait(), lines


class DockerBuilder:
    name = "docker"

    def __init__(self, docker: str | None = None) -> None:
        self.docker = docker or docker_executable()
        self._tools: DockerTools | None = None

    def tools(self) -> DockerTools:
        """The local docker's way to build (asked once), or a BackendError saying what
        is missing: the CLI, the engine, or BuildKit."""
        if self._tools is None:
            self._tools = probe(self.docker)
        return self._tools

    def argv(self, req: BuildRequest, mode: str = BUILDX) -> list[str]:
        image, fp = req.item.image, req.item.fingerprint
        verb = ["buildx", "build"] if mode == BUILDX else ["build"]
        argv = [
            self.docker,
            *verb,
            "--file",
            image.dockerfile_in_context(),
            "--tag",
            fp.uri,
            "--platform",
            image.platform,
            "--progress",
            "plain",
            "--label",
            f"dev.relaunch.image={image.name}",
            "--label",
            f"dev.relaunch.tag={fp.tag}",
        ]
        for k, v in sorted(req.build_args.items()):
            argv += ["--build-arg", f"{k}={v}"]
        for sid, ref in sorted(image.secrets.items()):
            argv += ["--secret", f"id={sid},env={secret_variable(sid, ref)}"]
        if mode == BUILDX:
            argv.append("--load")  # into the engine; `docker push` follows when pushing
        argv.append("-")  # the context tarball comes on stdin
        return argv

    def build(self, req: BuildRequest) -> BuildResult:
        tools = self.tools()
        env = secret_environment(req)
        if tools.mode != BUILDX:
            env["DOCKER_BUILDKIT"] = "1"
        tarball = req.context_tarball()
        argv = [tools.exe, *self.argv(req, tools.mode)[1:]]
        what = f"{req.item.name}:{req.item.tag}"
        log = LogFile(req)
        try:
            log.line(f"relaunch: docker {tools.client_version}, engine {tools.server_version}")
            log.line(f"relaunch: {' '.join(argv)}")
            log.line(f"relaunch: context {tarball.files} files, sha256 {tarball.sha256}")
            rc, lines = _stream(argv, tarball.path, env, log)
            if rc != 0:
                raise build_failure(lines, rc, what, str(req.log_path))
            if req.push:
                push = [tools.exe, "push", req.item.uri]
                log.line(f"relaunch: {' '.join(push)}")
                rc, lines = _stream(push, None, dict(os.environ), log)
                if rc != 0:
                    raise push_failure(lines, rc, req.item.uri, str(req.log_path))
        finally:
            log.close()
        detail = {"context_sha256": tarball.sha256, "docker": tools.mode}
        return BuildResult(self.name, req.push, req.log_path, detail)
