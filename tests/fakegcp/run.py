"""Cloud Run v2 jobs: create / get / patch / run, executions get / list, operations get.

``run`` starts an execution that runs the job template's first container
(command + args, env) as a local process; the execution's operation is done when the
process ends (``succeededCount`` or ``failedCount`` 1). An image pull fault fails the
execution without running it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from tests.fakegcp.common import container_env, new_id, now, page
from tests.fakegcp.executor import Workload, base_env
from tests.fakegcp.schemas import validate
from tests.fakegcp.server import FakeError, Request, Router

if TYPE_CHECKING:
    from tests.fakegcp.fake import FakeGCP

_LOC = r"/v2/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
_JOB = _LOC + r"/jobs/(?P<job>[^/:]+)"
_JOB_T = "type.googleapis.com/google.cloud.run.v2.Job"
_EXEC_T = "type.googleapis.com/google.cloud.run.v2.Execution"


class RunService:
    def __init__(self, fake: FakeGCP) -> None:
        self.fake = fake
        self.lock = threading.RLock()
        self.jobs: dict[str, dict[str, Any]] = {}
        self.executions: dict[str, dict[str, Any]] = {}
        self.workloads: dict[str, Workload | None] = {}
        self.operations: dict[str, dict[str, Any]] = {}

    def register(self, router: Router) -> None:
        router.add("run", "POST", _LOC + r"/jobs", self.create)
        router.add("run", "GET", _JOB, self.get)
        router.add("run", "PATCH", _JOB, self.patch)
        router.add("run", "POST", _JOB + r":run", self.run)
        router.add("run", "GET", _JOB + r"/executions", self.list_executions)
        router.add("run", "GET", _JOB + r"/executions/(?P<ex>[^/:]+)", self.get_execution)
        router.add("run", "GET", _LOC + r"/operations/(?P<op>[^/:]+)", self.get_operation)

    def _op(self, project: str, location: str, target: dict[str, Any], kind: str) -> dict[str, Any]:
        name = f"projects/{project}/locations/{location}/operations/{new_id()}"
        op = {"name": name, "metadata": {"@type": kind, **target}, "done": False, "_target": target}
        self.operations[name] = op
        self._settle(op)
        return self._public(op)

    def _settle(self, op: dict[str, Any]) -> None:
        target = op["_target"]
        if target.get("reconciling"):
            return
        op["done"] = True
        op["metadata"] = {**op["metadata"], **target}
        if target.get("failedCount"):
            op["error"] = {"code": 2, "message": target.get("_error", "Task failed.")}
        else:
            op["response"] = {"@type": op["metadata"]["@type"], **target}

    @staticmethod
    def _public(resource: dict[str, Any]) -> dict[str, Any]:
        def clean(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items() if not k.startswith("_")}
            return value

        return clean(resource)  # type: ignore[no-any-return]

    def create(self, req: Request, project: str, location: str) -> dict[str, Any]:
        body = validate("run.v2", "GoogleCloudRunV2Job", req.json())
        job_id = req.query.get("jobId", "")
        if not job_id or not (body.get("template") or {}).get("template", {}).get("containers"):
            raise FakeError(400, "job_id and template.template.containers are required")
        name = f"projects/{project}/locations/{location}/jobs/{job_id}"
        with self.lock:
            if name in self.jobs:
                raise FakeError(409, f"Resource '{job_id}' already exists.")
            body.update(name=name, uid=new_id(), createTime=now(), generation="1")
            self.jobs[name] = body
            return self._op(project, location, body, _JOB_T)

    def _job(self, project: str, location: str, job: str) -> dict[str, Any]:
        found = self.jobs.get(f"projects/{project}/locations/{location}/jobs/{job}")
        if found is None:
            raise FakeError(
                404, f"Resource '{job}' of kind 'JOB' in region '{location}' not found."
            )
        return found

    def get(self, req: Request, project: str, location: str, job: str) -> dict[str, Any]:
        with self.lock:
            return self._public(self._job(project, location, job))

    def patch(self, req: Request, project: str, location: str, job: str) -> dict[str, Any]:
        body = validate("run.v2", "GoogleCloudRunV2Job", req.json())
        with self.lock:
            found = self._job(project, location, job)
            found.update({k: v for k, v in body.items() if k not in ("name", "uid")})
            found["generation"] = str(int(found["generation"]) + 1)
            found["updateTime"] = now()
            return self._op(project, location, found, _JOB_T)

    def run(self, req: Request, project: str, location: str, job: str) -> dict[str, Any]:
        validate("run.v2", "GoogleCloudRunV2RunJobRequest", req.json())
        with self.lock:
            found = self._job(project, location, job)
            name = f"{found['name']}/executions/{job}-{new_id()[-5:]}"
            execution = {"name": name, "uid": new_id(), "job": job, "createTime": now(),
                         "startTime": now(), "taskCount": 1, "reconciling": True,
                         "runningCount": 1}  # fmt: skip
            self.executions[name] = execution
            container = found["template"]["template"]["containers"][0]
            self.workloads[name] = None
            if self.fake.faults.take_image_pull(container.get("image", "")):
                self._end(execution, 1, f"Image '{container.get('image')}' not found.")
            elif self.fake.execute and (container.get("command") or container.get("args")):
                argv = [*(container.get("command") or []), *(container.get("args") or [])]
                env = {**base_env(), **self.fake.env(), **container_env(container.get("env"))}
                env.update(CLOUD_RUN_JOB=job, CLOUD_RUN_EXECUTION=name.rsplit("/", 1)[-1])
                self.workloads[name] = self.fake.executor.start(name, argv, env)
            else:
                self._end(execution, 0)
            return self._op(project, location, execution, _EXEC_T)

    def _end(self, execution: dict[str, Any], code: int, error: str = "") -> None:
        execution.update(reconciling=False, runningCount=0, completionTime=now())
        execution["succeededCount" if code == 0 else "failedCount"] = 1
        if code:
            execution["_error"] = error or f"Task exited with exit code {code}."

    def list_executions(
        self, req: Request, project: str, location: str, job: str
    ) -> dict[str, Any]:
        with self.lock:
            prefix = self._job(project, location, job)["name"] + "/executions/"
            items = [self._public(e) for n, e in self.executions.items() if n.startswith(prefix)]
        return page(req, items, "executions")

    def get_execution(
        self, req: Request, project: str, location: str, job: str, ex: str
    ) -> dict[str, Any]:
        name = f"projects/{project}/locations/{location}/jobs/{job}/executions/{ex}"
        with self.lock:
            if name not in self.executions:
                raise FakeError(404, f"Execution {ex} not found.")
            return self._public(self.executions[name])

    def get_operation(self, req: Request, project: str, location: str, op: str) -> dict[str, Any]:
        name = f"projects/{project}/locations/{location}/operations/{op}"
        with self.lock:
            if name not in self.operations:
                raise FakeError(404, f"Operation {op} not found.")
            return self._public(self.operations[name])

    def tick(self) -> None:
        with self.lock:
            for name, workload in self.workloads.items():
                execution = self.executions[name]
                if workload is not None and execution["reconciling"]:
                    code = workload.exit_code
                    if code is not None:
                        self._end(execution, code)
            for op in self.operations.values():
                if not op["done"]:
                    self._settle(op)
