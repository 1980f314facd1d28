"""Cloud Build v1: builds create (a long-running operation) / get, and operations get.

Builds do not run their steps: they go QUEUED → WORKING → ``outcome`` (SUCCESS by
default; set ``fake.cloudbuild.outcome = "FAILURE"``), reporting the requested
``images`` with fake digests in ``results``. As Cloud Build does, a build whose
``source.storageSource`` object is missing fails (FETCH_SOURCE_FAILED), and a build with
a ``logsBucket`` writes its log to ``<logsBucket>/log-<id>.txt`` as it goes (the last
line, like the real one, is whatever ``last_log_line`` says, without a newline).
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import TYPE_CHECKING, Any

from tests.fakegcp.common import new_id, now
from tests.fakegcp.schemas import validate
from tests.fakegcp.server import FakeError, Request, Router

if TYPE_CHECKING:
    from tests.fakegcp.fake import FakeGCP

_BUILD_T = "type.googleapis.com/google.devtools.cloudbuild.v1.Build"
_META_T = "type.googleapis.com/google.devtools.cloudbuild.v1.BuildOperationMetadata"
_PARENT = r"/v1/projects/(?P<project>[^/]+)(?:/locations/(?P<location>[^/]+))?/builds"


class CloudBuildService:
    def __init__(self, fake: FakeGCP) -> None:
        self.fake = fake
        self.lock = threading.RLock()
        self.builds: dict[str, dict[str, Any]] = {}  # id → Build
        self._changed: dict[str, float] = {}
        self.outcome = "SUCCESS"
        self.last_log_line = "DONE"

    def register(self, router: Router) -> None:
        router.add("cloudbuild", "POST", _PARENT, self.create)
        router.add("cloudbuild", "GET", _PARENT + r"/(?P<build>[^/]+)", self.get)
        router.add("cloudbuild", "GET", r"/v1/operations/build/[^/]+/(?P<build>[^/]+)", self.op)

    def _operation(self, build: dict[str, Any]) -> dict[str, Any]:
        op: dict[str, Any] = {
            "name": f"operations/build/{build['projectId']}/{build['id']}",
            "metadata": {"@type": _META_T, "build": build},
            "done": build["status"] in ("SUCCESS", "FAILURE", "CANCELLED", "TIMEOUT"),
        }
        if op["done"]:
            if build["status"] == "SUCCESS":
                op["response"] = {"@type": _BUILD_T, **build}
            else:
                op["error"] = {"code": 2, "message": f"Build failed; status: {build['status']}"}
        return op

    def create(self, req: Request, project: str, location: str | None = None) -> dict[str, Any]:
        body = validate("cloudbuild.v1", "Build", req.json())
        if not body.get("steps"):
            raise FakeError(400, "invalid build: a build needs at least one step")
        build_id = f"{new_id()}-fake"
        body.update(
            id=build_id, projectId=project, status="QUEUED", createTime=now(), logUrl="about:blank"
        )
        with self.lock:
            self.builds[build_id] = body
            self._changed[build_id] = time.monotonic()
            return self._operation(dict(body))

    def _build(self, build: str) -> dict[str, Any]:
        found = self.builds.get(build)
        if found is None:
            raise FakeError(404, f"Build {build!r} not found")
        return found

    def get(
        self, req: Request, project: str, build: str, location: str | None = None
    ) -> dict[str, Any]:
        with self.lock:
            return dict(self._build(build))

    def op(self, req: Request, build: str) -> dict[str, Any]:
        with self.lock:
            return self._operation(dict(self._build(build)))

    def _log(self, build: dict[str, Any], text: str) -> None:
        logs = build.get("logsBucket")
        if not logs:
            return
        bucket, _, prefix = logs.removeprefix("gs://").partition("/")
        name = f"{prefix}/log-{build['id']}.txt".lstrip("/")
        try:
            old = self.fake.gcs.get_object(bucket, name).data
        except FakeError:
            old = b""
        self.fake.gcs.put(bucket, name, old + text.encode())

    def _source_missing(self, build: dict[str, Any]) -> str | None:
        src = (build.get("source") or {}).get("storageSource")
        if not src:
            return None
        try:
            self.fake.gcs.get_object(src["bucket"], src["object"])
        except FakeError:
            return f"gs://{src['bucket']}/{src['object']}: object not found"
        return None

    def tick(self) -> None:
        t = time.monotonic()
        with self.lock:
            for build_id, build in self.builds.items():
                if t - self._changed[build_id] < self.fake.step:
                    continue
                if build["status"] == "QUEUED":
                    build.update(status="WORKING", startTime=now())
                    self._log(build, f'starting build "{build_id}"\n\nFETCHSOURCE\n')
                elif build["status"] == "WORKING":
                    missing = self._source_missing(build)
                    status = "FAILURE" if missing else self.outcome
                    build.update(status=status, finishTime=now())
                    if missing:
                        build["failureInfo"] = {"type": "FETCH_SOURCE_FAILED", "detail": missing}
                        build["statusDetail"] = missing
                    self._log(build, f"Step #0: {status}\n{self.last_log_line}")
                    images = build.get("images") or []
                    build["results"] = {
                        "images": [
                            {
                                "name": i,
                                "digest": "sha256:" + hashlib.sha256(i.encode()).hexdigest(),
                            }
                            for i in images
                        ]
                    }
                self._changed[build_id] = t
