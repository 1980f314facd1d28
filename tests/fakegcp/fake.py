"""FakeGCP: the services, the fault script, the executor and the clock, on one server."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.fakegcp.executor import Executor
from tests.fakegcp.faults import Faults
from tests.fakegcp.gcs import GcsService
from tests.fakegcp.oauth import OAuthService
from tests.fakegcp.server import HttpServer, Router

APIS = ("aiplatform", "compute", "storage", "cloudbuild", "run", "logging", "secretmanager")


class FakeGCP:
    """A running fake. ``url`` serves every API; ``faults`` scripts failures.

    ``step`` is how long each lifecycle step takes (job QUEUED → PENDING → RUNNING,
    operation PENDING → RUNNING → DONE); a clock thread advances every state machine.
    ``execute``: run the command of jobs / instances / executions as local processes.
    ``latency_ms`` is added to every request (see :meth:`set_latency`); without it,
    ``FAKEGCP_LATENCY_MS`` says how much (``20``: every API; ``storage:20``: one API).
    """

    def __init__(
        self,
        root: Path,
        *,
        project: str = "fake-project",
        step: float = 0.05,
        latency_ms: float | None = None,
        latency_api: str | None = None,
    ) -> None:
        self.root = root
        self.project = project
        self.step = step
        self.execute = True
        self.notice = 2.0  # seconds between SIGTERM and SIGKILL on preemption
        self.router = Router()
        self.faults = Faults()
        self.router.before = self.faults.intercept
        self.executor = Executor(root)
        self.gcs = GcsService()
        self.gcs.register(self.router)
        self._services: list[Any] = [self.gcs]
        self._add_services()
        self.http = HttpServer(self.router)
        self.url = self.http.url
        self.oauth = OAuthService(self.url)
        self.oauth.register(self.router)
        self._endpoints: list[HttpServer] = []
        if latency_ms is None:
            latency_api, latency_ms = latency_from_env(os.environ.get("FAKEGCP_LATENCY_MS", ""))
        self.set_latency(latency_ms, latency_api)
        self._stop = threading.Event()
        self._clock = threading.Thread(target=self._run_clock, daemon=True)

    def _add_services(self) -> None:
        from tests.fakegcp.cloudbuild import CloudBuildService
        from tests.fakegcp.compute import ComputeService
        from tests.fakegcp.logging import LoggingService
        from tests.fakegcp.run import RunService
        from tests.fakegcp.secrets import SecretsService
        from tests.fakegcp.vertex import VertexService

        self.vertex = VertexService(self)
        self.compute = ComputeService(self)
        self.cloudbuild = CloudBuildService(self)
        self.run = RunService(self)
        self.logging = LoggingService(self)
        self.secrets = SecretsService()
        services = (
            self.vertex,
            self.compute,
            self.cloudbuild,
            self.run,
            self.logging,
            self.secrets,
        )
        for service in services:
            service.register(self.router)
        self._services += [self.vertex, self.compute, self.compute.ops, self.cloudbuild, self.run]

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> FakeGCP:
        self.http.start()
        self._clock.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._clock.join(timeout=5)
        self.executor.stop_all()
        self.compute.stop_all()
        self.vertex.stop_all()
        self.http.stop()
        for server in self._endpoints:
            server.stop()

    def set_latency(self, ms: float, api: str | None = None) -> None:
        """Add ``ms`` milliseconds to every request (of ``api`` only, e.g. "storage"),
        from now on; 0 removes it. Concurrent requests each wait in their own thread."""
        if ms < 0:
            raise ValueError("latency must be >= 0 ms")
        self.router.latency[api or "*"] = ms / 1000.0

    def add_endpoint(self, name: str, tls: Any = None) -> str:
        """Serve the same cloud on one more port; its requests carry ``via == name``
        (a benchmark gives each kind of client its own endpoint). Returns its URL. With
        ``tls`` (an ``ssl.SSLContext``, tests/fakegcp/tls.py) over https."""
        server = HttpServer(self.router, name, tls)
        server.start()
        self._endpoints.append(server)
        return server.url

    def __enter__(self) -> FakeGCP:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run_clock(self) -> None:
        while not self._stop.wait(min(self.step, 0.05)):
            for service in self._services:
                tick = getattr(service, "tick", None)
                if tick is not None:
                    tick()

    # -- what product code needs to reach it -----------------------------------

    def env(self) -> dict[str, str]:
        """Environment that points relaunch (and google-cloud-storage) at this fake."""
        env = {f"RELAUNCH_{api.upper()}_ENDPOINT": self.url for api in APIS}
        env["STORAGE_EMULATOR_HOST"] = self.url
        env["GOOGLE_CLOUD_PROJECT"] = self.project
        return env

    def env_for(self, url: str) -> dict[str, str]:
        """:meth:`env`, pointing at another endpoint of this fake (:meth:`add_endpoint`)."""
        return {k: (url if v == self.url else v) for k, v in self.env().items()}

    def requests(self, api: str | None = None) -> list[tuple[str, str, str]]:
        """Every request served so far, as (api, method, path)."""
        return [r for r in list(self.router.log) if api is None or r[0] == api]


def latency_from_env(value: str) -> tuple[str | None, float]:
    """``FAKEGCP_LATENCY_MS``: ``"20"`` (every API) or ``"storage:20"`` → (api, ms)."""
    api, _, ms = value.strip().rpartition(":")
    if not ms:
        return None, 0.0
    try:
        return (api or None), float(ms)
    except ValueError:
        raise ValueError(f"FAKEGCP_LATENCY_MS={value!r}: want MS or API:MS") from None
