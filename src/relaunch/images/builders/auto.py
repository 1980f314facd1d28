"""The seeds' fallback chain: Cloud Build with a staged tarball, then the local Docker
engine (buildx, or the BuildKit built into an older engine) when it can build.

A build that *failed* (the Dockerfile is broken) is not retried elsewhere: it would fail
there too, after hours. Only infrastructure trouble (permission, rate limits, 5xx,
unreachable endpoints) falls back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from relaunch.errors import BackendError, SpecError
from relaunch.images.builders.base import BuildRequest, BuildResult
from relaunch.images.builders.cloudbuild import CloudBuildBuilder
from relaunch.images.builders.docker import DockerBuilder
from relaunch.spec.project import ProjectConfig

FALLBACK_REASONS = frozenset({"permission", "transient", "quota"})


class AutoBuilder:
    name = "auto"

    def __init__(
        self,
        config: ProjectConfig,
        *,
        cloudbuild: CloudBuildBuilder | None = None,
        docker: DockerBuilder | None = None,
        docker_problem: Callable[[], BackendError | None] | None = None,
    ) -> None:
        self.cloudbuild = cloudbuild or CloudBuildBuilder(config)
        self.docker = docker or DockerBuilder()
        self.docker_problem = docker_problem or self._local_problem

    def _local_problem(self) -> BackendError | None:
        """Why the local engine cannot build (None: it can)."""
        try:
            self.docker.tools()
        except BackendError as e:
            return e
        return None

    def build(self, req: BuildRequest) -> BuildResult:
        if self.cloudbuild.configured():
            try:
                return self.cloudbuild.build(req)
            except BackendError as e:
                if e.reason not in FALLBACK_REASONS:
                    raise
                if (why := self.docker_problem()) is not None:
                    raise BackendError(
                        f"{e.message}; no local fallback either: {why.message}",
                        reason=e.reason,
                        hint=e.hint,
                    ) from None
                req.on_line(f"relaunch: Cloud Build unavailable ({e.message}); local docker")
                with open(req.log_path, "a") as f:
                    f.write(f"relaunch: falling back to the local docker engine: {e}\n")
                # The seeds' step 3 is `buildx --push`: Cloud Build would have pushed too.
                return self.docker.build(replace(req, push=True))
        why = self.docker_problem()
        if why is None:
            return self.docker.build(req)
        raise SpecError(
            f"no builder available: Cloud Build is not configured, and {why.message}",
            hint=(f"{why.hint}; or " if why.hint else "")
            + "set [gcp] project and staging_bucket in relaunch.toml to build on Cloud Build",
        )
