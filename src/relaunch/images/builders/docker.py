"""``docker buildx build`` on the local engine. The context is relaunch's deterministic
tarball on stdin, so the engine sees exactly the files the tag was computed from. The
argv is a list (no shell). Build args hold no secrets: an image's ``secrets`` go to
``--secret id=ID,env=VAR``, so only the variable's name is on the argv and in the log."""

from __future__ import annotations

import os
import shutil
import subprocess

from relaunch.errors import BackendError
from relaunch.images.builders.base import BuildRequest, BuildResult, LogFile


def docker_executable() -> str:
    return os.environ.get("RELAUNCH_DOCKER", "docker")


def engine_reachable(docker: str | None = None) -> bool:
    """Whether a Docker engine answers (``docker info``), within 20 seconds."""
    exe = shutil.which(docker or docker_executable())
    if exe is None:
        return False
    try:
        done = subprocess.run(
            [exe, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def secret_variable(sid: str, ref: str) -> str:
    """The environment variable ``docker buildx`` reads secret ``sid`` from: the named one
    for ``env:VAR``, else one relaunch fills from Secret Manager."""
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


_PUSH_HINT = "; for Artifact Registry run `gcloud auth configure-docker`"


class DockerBuilder:
    name = "docker"

    def __init__(self, docker: str | None = None) -> None:
        self.docker = docker or docker_executable()

    def argv(self, req: BuildRequest) -> list[str]:
        image, fp = req.item.image, req.item.fingerprint
        argv = [
            self.docker,
            "buildx",
            "build",
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
        argv.append("--push" if req.push else "--load")
        argv.append("-")  # the context tarball comes on stdin
        return argv

    def build(self, req: BuildRequest) -> BuildResult:
        exe = shutil.which(self.docker)
        if exe is None:
            raise BackendError(
                f"'{self.docker}' not found on PATH",
                reason="user-error",
                hint="install Docker, or build with --builder cloudbuild",
            )
        env = secret_environment(req)
        tarball = req.context_tarball()
        argv = [exe, *self.argv(req)[1:]]
        log = LogFile(req)
        try:
            log.line(f"relaunch: {' '.join(argv)}")
            log.line(f"relaunch: context {tarball.files} files, sha256 {tarball.sha256}")
            with open(tarball.path, "rb") as stdin:
                proc = subprocess.Popen(
                    argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
                )
                assert proc.stdout is not None
                for raw in proc.stdout:
                    log.line(raw.decode("utf-8", "replace"))
                rc = proc.wait()
        finally:
            log.close()
        if rc != 0:
            what = "push" if req.push else "build"
            raise BackendError(
                f"docker {what} of {req.item.name}:{req.item.tag} failed (exit {rc})",
                reason="user-error",
                hint=f"see the log {req.log_path}" + (_PUSH_HINT if req.push else ""),
            )
        return BuildResult(self.name, req.push, req.log_path, {"context_sha256": tarball.sha256})
