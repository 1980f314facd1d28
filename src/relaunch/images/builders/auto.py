"""The seeds' fallback chain: Cloud Build with a staged tarball, then a local
``docker buildx`` when a Docker engine is reachable.

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
from relaunch.images.builders.docker import DockerBuilder, engine_reachable
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
        docker_ready: Callable[[], bool] = engine_reachable,
    ) -> None:
        self.cloudbuild = cloudbuild or CloudBuildBuilder(config)
        self.docker = docker or DockerBuilder()
        self.docker_ready = docker_ready

    def build(self, req: BuildRequest) -> BuildResult:
        if self.cloudbuild.configured():
            try:
                return self.cloudbuild.build(req)
            except BackendError as e:
                if e.reason not in FALLBACK_REASONS or not self.docker_ready():
                    raise
                req.on_line(f"relaunch: Cloud Build unavailable ({e.message}); local buildx")
                with open(req.log_path, "a") as f:
                    f.write(f"relaunch: falling back to local docker buildx: {e}\n")
                # The seeds' step 3 is `buildx --push`: Cloud Build would have pushed too.
                return self.docker.build(replace(req, push=True))
        if self.docker_ready():
            return self.docker.build(req)
        raise SpecError(
            "no builder available: Cloud Build is not configured and no Docker engine answers",
            hint="set [gcp] project and staging_bucket in relaunch.toml, or start Docker",
        )
