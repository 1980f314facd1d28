"""Vertex AI v1 CustomJobs: create / get / list / cancel, with the full JobState lifecycle.

A job goes QUEUED → PENDING → RUNNING (one ``fake.step`` each) → SUCCEEDED | FAILED,
or CANCELLING → CANCELLED. While running, replica 0 of worker pool 0 runs its
``containerSpec`` command + args as a local process (env: the container's ``env`` and
the fake's endpoints). A job without a command stays RUNNING until the test calls
:meth:`VertexService.finish`. How the fake reports each ending:

- exit 0 → SUCCEEDED; exit N → FAILED, error code 3 "The replica workerpool0-0 exited
  with a non-zero status of N".
- :meth:`preempt` → SIGTERM, ``fake.notice`` seconds, SIGKILL, then FAILED with error
  code 14 "STOCKOUT: the replica workerpool0-0 was preempted ..." (the spot VM was
  reclaimed); with ``restart=True`` the command starts again and the job stays RUNNING
  (Vertex restarting the worker on another VM).
- stockout fault in the region → FAILED, code 8 "Resources are insufficient ...".
- image pull fault → FAILED, code 3 "Unable to pull image ...".
- quota fault ``sync=True`` → create answers 429; ``sync=False`` → the job stays
  QUEUED while the fault lives (Vertex queues jobs that lack quota).
- ``scheduling.timeout`` elapsed → FAILED, code 4 DEADLINE_EXCEEDED.
- a FLEX_START job in a region with a stockout fault waits in PENDING, and EXPIRES
  after its ``maxWaitDuration``.
- :meth:`set_state` puts a job in any state (PAUSED, UPDATING, PARTIALLY_SUCCEEDED…).

Credentials: a running job's worker reaches the metadata server of its VM, which hands
out tokens for the job's service account (``jobSpec.serviceAccount``, else the
project's Vertex AI Custom Code Service Agent), as Google's does; here that server is
the job's own :class:`MetadataServer` (``Job.metadata``), passed to the command as
``GCE_METADATA_HOST`` and stopped when the job ends.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.fakegcp.common import container_env, matcher, new_id, now, page
from tests.fakegcp.executor import Workload, base_env
from tests.fakegcp.metadata import MetadataServer
from tests.fakegcp.schemas import validate
from tests.fakegcp.server import FakeError, Request, Router

if TYPE_CHECKING:
    from tests.fakegcp.fake import FakeGCP

_PARENT = r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/customJobs"
_TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"}
_ENDED = _TERMINAL | {"JOB_STATE_EXPIRED", "JOB_STATE_PARTIALLY_SUCCEEDED"}
#: the project's Vertex AI Custom Code Service Agent: a job without a service account
CUSTOM_CODE_AGENT = "service-123456789@gcp-sa-aiplatform-cc.iam.gserviceaccount.com"


def _seconds(duration: str | None) -> float | None:
    return float(duration[:-1]) if duration else None


@dataclass
class Job:
    resource: dict[str, Any]
    region: str
    changed: float = field(default_factory=time.monotonic)
    workload: Workload | None = None
    preempt_at: float | None = None
    restart_in_place: bool = False  # on preemption: restart the container, job RUNNING
    restarting: bool = False
    restarts: int = 0
    ending: tuple[str, int, str] | None = None  # state, error code, message once the process ends
    started: float | None = None
    metadata: MetadataServer | None = None  # its worker VM's (stopped once the job ended)

    @property
    def state(self) -> str:
        return str(self.resource["state"])

    def set_state(self, state: str) -> None:
        self.resource["state"] = state
        self.resource["updateTime"] = now()
        self.changed = time.monotonic()
        if state == "JOB_STATE_RUNNING":
            self.resource["startTime"] = now()
            self.started = time.monotonic()
        if state in _TERMINAL:
            self.resource["endTime"] = now()

    def fail(self, state: str, code: int, message: str) -> None:
        if code:
            self.resource["error"] = {"code": code, "message": message}
        self.set_state(state)


def _check_required(job: dict[str, Any]) -> None:
    missing = []
    if not job.get("displayName"):
        missing.append("display_name")
    pools = (job.get("jobSpec") or {}).get("workerPoolSpecs") or []
    if not pools:
        missing.append("job_spec.worker_pool_specs")
    for i, pool in enumerate(pools):
        if not (pool.get("machineSpec") or {}).get("machineType"):
            missing.append(f"job_spec.worker_pool_specs[{i}].machine_spec.machine_type")
        if not (pool.get("containerSpec") or {}).get("imageUri") and not pool.get(
            "pythonPackageSpec"
        ):
            missing.append(f"job_spec.worker_pool_specs[{i}].container_spec.image_uri")
    if missing:
        raise FakeError(400, f"Required field(s) not set: {', '.join(missing)}.")


class VertexService:
    def __init__(self, fake: FakeGCP) -> None:
        self.fake = fake
        self.lock = threading.RLock()
        self.jobs: dict[str, Job] = {}
        self.worker_restarts = 0  # in-place restarts of a worker that exits non-zero

    def register(self, router: Router) -> None:
        router.add("aiplatform", "POST", _PARENT, self.create)
        router.add("aiplatform", "GET", _PARENT, self.list)
        router.add("aiplatform", "GET", _PARENT + r"/(?P<job>[^/:]+)", self.get)
        router.add("aiplatform", "POST", _PARENT + r"/(?P<job>[^/:]+):cancel", self.cancel)

    # -- routes ----------------------------------------------------------------

    def create(self, req: Request, project: str, location: str) -> dict[str, Any]:
        body = validate("aiplatform.v1", "GoogleCloudAiplatformV1CustomJob", req.json())
        _check_required(body)
        quota = self.fake.faults.take_quota(location, sync=True)
        if quota is not None:
            metric = f"custom_model_training_{quota.extra['metric'].lower()}"
            raise FakeError(
                429,
                f"The following quota metrics exceed quota limits: "
                f"aiplatform.googleapis.com/{metric} in region {location}.",
            )
        name = f"projects/{project}/locations/{location}/customJobs/{new_id()}"
        body.update(name=name, createTime=now(), updateTime=now(), state="JOB_STATE_QUEUED")
        with self.lock:
            self.jobs[name] = Job(body, location)
            return dict(body)

    def _job(self, project: str, location: str, job: str) -> Job:
        name = f"projects/{project}/locations/{location}/customJobs/{job}"
        found = self.jobs.get(name)
        if found is None:
            raise FakeError(404, f'The CustomJob "{name}" does not exist.')
        return found

    def get(self, req: Request, project: str, location: str, job: str) -> dict[str, Any]:
        with self.lock:
            return dict(self._job(project, location, job).resource)

    def list(self, req: Request, project: str, location: str) -> dict[str, Any]:
        keep = matcher(req.query.get("filter", ""))
        prefix = f"projects/{project}/locations/{location}/"
        with self.lock:
            items = [
                dict(j.resource)
                for n, j in self.jobs.items()
                if n.startswith(prefix) and keep(j.resource)
            ]
        return page(req, items, "customJobs")

    def cancel(self, req: Request, project: str, location: str, job: str) -> dict[str, Any]:
        with self.lock:
            found = self._job(project, location, job)
            if found.state in _TERMINAL:
                raise FakeError(
                    400,
                    f"Cannot cancel the job in state {found.state}.",
                    status="FAILED_PRECONDITION",
                )
            found.set_state("JOB_STATE_CANCELLING")
            found.ending = ("JOB_STATE_CANCELLED", 1, "CANCELED")
            if found.workload is not None:
                found.workload.terminate(self.fake.notice)
        return {}

    # -- scripting -------------------------------------------------------------

    def preempt(self, name: str, *, after: float = 0.0, restart: bool = False) -> None:
        """Reclaim the job's spot VM ``after`` seconds from now (or once it runs).

        ``restart=False``: the job FAILS with a preemption (STOCKOUT) error.
        ``restart=True``: Vertex restarts the worker on another VM and the job stays
        RUNNING — the container's command starts again from the beginning."""
        with self.lock:
            job = self.jobs[name]
            job.preempt_at = time.monotonic() + after
            job.restart_in_place = restart

    def set_state(self, name: str, state: str, *, code: int = 0, message: str = "") -> None:
        """Put a job in any JobState, e.g. ones the lifecycle above never reaches
        (PAUSED, UPDATING, PARTIALLY_SUCCEEDED); a terminal one ends its workload."""
        with self.lock:
            job = self.jobs[name]
            job.fail(state, code, message)
            if state in _ENDED:
                job.resource.setdefault("endTime", now())
                if job.workload is not None:
                    job.workload.terminate(self.fake.notice)

    def finish(self, name: str, *, succeeded: bool = True) -> None:
        """End a job that runs no command."""
        with self.lock:
            job = self.jobs[name]
            if succeeded:
                job.set_state("JOB_STATE_SUCCEEDED")
            else:
                job.fail("JOB_STATE_FAILED", 3, "The replica workerpool0-0 exited with status 1.")

    # -- the clock ---------------------------------------------------------------

    def tick(self) -> None:
        with self.lock:
            for job in list(self.jobs.values()):
                self._advance(job)
                server, workload = job.metadata, job.workload
                if (
                    server is not None
                    and not server.stopped
                    and job.state in _ENDED
                    and (workload is None or not workload.group_alive())
                ):
                    server.stop()

    def stop_all(self) -> None:
        with self.lock:
            for job in self.jobs.values():
                if job.metadata is not None:
                    job.metadata.stop()

    def _advance(self, job: Job) -> None:
        state, faults = job.state, self.fake.faults
        due = time.monotonic() - job.changed >= self.fake.step
        pool = job.resource["jobSpec"]["workerPoolSpecs"][0]
        if state == "JOB_STATE_QUEUED" and due:
            if not faults.active("quota", job.region, sync=False):
                job.set_state("JOB_STATE_PENDING")
        elif state == "JOB_STATE_PENDING" and due:
            image = (pool.get("containerSpec") or {}).get("imageUri", "")
            scheduling = job.resource["jobSpec"].get("scheduling") or {}
            if scheduling.get("strategy") == "FLEX_START" and faults.active("stockout", job.region):
                # Dynamic Workload Scheduler: wait for capacity up to maxWaitDuration.
                wait = _seconds(scheduling.get("maxWaitDuration")) or 7 * 86400
                if time.monotonic() - job.changed >= wait:
                    job.set_state("JOB_STATE_EXPIRED")
            elif faults.take_stockout(job.region):
                job.fail(
                    "JOB_STATE_FAILED",
                    8,
                    f"Resources are insufficient in region: {job.region}. "
                    "Please try a different region.",
                )
            elif faults.take_image_pull(image):
                job.fail("JOB_STATE_FAILED", 3, f"Unable to pull image {image}: manifest unknown")
            else:
                job.set_state("JOB_STATE_RUNNING")
                self._start(job, pool)
        elif state == "JOB_STATE_RUNNING":
            self._watch(job)
        elif state == "JOB_STATE_CANCELLING" and (
            job.workload is None or job.workload.exit_code is not None
        ):
            assert job.ending is not None
            job.fail(*job.ending)

    def _start(self, job: Job, pool: dict[str, Any]) -> None:
        spec = pool.get("containerSpec") or {}
        argv = [*(spec.get("command") or []), *(spec.get("args") or [])]
        if not argv or not self.fake.execute:
            return
        job_id = job.resource["name"].rsplit("/", 1)[-1]
        if job.metadata is None:
            account = job.resource["jobSpec"].get("serviceAccount") or CUSTOM_CODE_AGENT
            vm = {"name": f"workerpool0-0-{job_id}", "id": job_id, "zone": f"{job.region}-a"}
            job.metadata = MetadataServer(
                {**vm, "serviceAccounts": [{"email": account}]},
                job.resource["name"].split("/")[1],
                token=f"fake-vertex-token-{new_id()}",
            )
            job.metadata.start()
        env = {**base_env(), **self.fake.env(), **container_env(spec.get("env"))}
        env["GCE_METADATA_HOST"] = job.metadata.host
        env["CLOUD_ML_JOB_ID"] = job_id
        out_dir = (job.resource["jobSpec"].get("baseOutputDirectory") or {}).get("outputUriPrefix")
        if out_dir:
            env["AIP_MODEL_DIR"] = f"{out_dir}/model/"
            env["AIP_CHECKPOINT_DIR"] = f"{out_dir}/checkpoints/"
        job.workload = self.fake.executor.start(job.resource["name"], argv, env)

    def _watch(self, job: Job) -> None:
        workload, t = job.workload, time.monotonic()
        timeout = _seconds((job.resource["jobSpec"].get("scheduling") or {}).get("timeout"))
        if job.restarting:
            if workload is None or workload.exit_code is not None:
                job.restarting, job.restarts = False, job.restarts + 1
                self._start(job, job.resource["jobSpec"]["workerPoolSpecs"][0])
            return
        if job.ending is None and job.preempt_at is not None and t >= job.preempt_at:
            job.preempt_at = None
            if job.restart_in_place:
                job.restarting = True
                if workload is not None:
                    workload.terminate(self.fake.notice)
                return
            job.ending = (
                "JOB_STATE_FAILED",
                14,
                "STOCKOUT: the replica workerpool0-0 was preempted: its Spot VM was "
                "reclaimed by Compute Engine.",
            )
            if workload is not None:
                workload.terminate(self.fake.notice)
        elif job.ending is None and timeout and job.started and t - job.started > timeout:
            job.ending = ("JOB_STATE_FAILED", 4, f"Job timed out after {timeout:g}s.")
            if workload is not None:
                workload.terminate(self.fake.notice)
        code = workload.exit_code if workload is not None else None
        if job.ending is not None and (workload is None or code is not None):
            job.fail(*job.ending)
        elif code == 0:
            job.set_state("JOB_STATE_SUCCEEDED")
        elif code is not None and job.restarts < self.worker_restarts:
            # Vertex restarts a worker that exits non-zero in place, a few times, before
            # it fails the job.
            job.restarts += 1
            self._start(job, job.resource["jobSpec"]["workerPoolSpecs"][0])
        elif code is not None:
            job.fail(
                "JOB_STATE_FAILED",
                3,
                f"The replica workerpool0-0 exited with a non-zero status of {code}. "
                "To find out more about why your job exited please check the logs.",
            )
