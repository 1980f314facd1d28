"""What the ops commands ask Google Cloud about relaunch's VMs (``relaunch vms``,
``cleanup``, ``serial``, ``events --cloud``): the seeds' ``gcp_ops.sh``, as library calls.

Every function names the Google Cloud project it acts on — the seeds' project/console
mismatch trap is a VM looked for in the wrong project. A VM is mapped to its run by
its labels and metadata (``relaunch-run-id``, ``relaunch-attempt``), never by its name.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from relaunch.backends.gce.body import ATTEMPT_LABEL, RUN_LABEL
from relaunch.errors import UserInputError
from relaunch.gcp.errors import backend_error
from relaunch.runs.records import Event
from relaunch.states import RunState

if TYPE_CHECKING:
    from relaunch.api import Workspace
    from relaunch.backends.gce.backend import GceBackend

#: what `vms` says of a VM: a live run's current attempt, or what cleanup may delete
OWNED, ORPHAN, UNKNOWN, FOREIGN = "owned", "orphan", "unknown-run", "not-relaunch"
#: Vertex job states in which a job still costs money
_LIVE_JOB_STATES = ("JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING")


@dataclass
class VmRow:
    name: str
    zone: str
    status: str
    run_id: str | None
    attempt: int | None
    age: float | None
    owner: str  # OWNED | ORPHAN | UNKNOWN | FOREIGN
    run_state: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def gcp_project(ws: Workspace, override: str | None = None) -> str:
    project = (
        override
        or ws.config.gcp.project
        or os.environ.get("GOOGLE_CLOUD_PROJECT")
        or os.environ.get("CLOUDSDK_CORE_PROJECT")
    )
    if not project:
        raise UserInputError(
            "no Google Cloud project to look in",
            hint="set [gcp] project in relaunch.toml, GOOGLE_CLOUD_PROJECT, or --gcp-project",
        )
    return str(project)


def _backend() -> GceBackend:
    from relaunch.backends.registry import get_backend

    return get_backend("gce")  # type: ignore[return-value]


def _endpoint(ws: Workspace) -> str | None:
    return ws.config.gcp.endpoints.get("compute")


def _age(timestamp: str) -> float | None:
    try:
        return time.time() - dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _metadata(vm: Any, key: str) -> str | None:
    for item in vm.metadata.items:
        if item.key == key:
            return str(item.value)
    return None


def list_vms(ws: Workspace, project: str, *, include_foreign: bool = False) -> list[VmRow]:
    """Every VM of ``project`` relaunch started (all zones), with the run that owns it."""
    try:
        pages = _backend().instances(_endpoint(ws)).aggregated_list(request={"project": project})
        vms = [vm for _, scoped in pages for vm in scoped.instances]
    except Exception as e:
        raise backend_error(e, f"listing the VMs of project {project}") from None
    runs = {r.run_id: r for r in ws.repo.runs()}
    rows = []
    for vm in vms:
        run_id = vm.labels.get(RUN_LABEL) or _metadata(vm, "relaunch-run-id")
        if not run_id and not include_foreign:
            continue
        attempt_text = vm.labels.get(ATTEMPT_LABEL) or _metadata(vm, "relaunch-attempt")
        attempt = int(attempt_text) if attempt_text and attempt_text.isdigit() else None
        run = runs.get(run_id) if run_id else None
        if not run_id:
            owner = FOREIGN
        elif run is None:
            owner = UNKNOWN
        elif not run.state.terminal and run.attempt == attempt:
            owner = OWNED
        else:
            owner = ORPHAN
        rows.append(
            VmRow(
                name=vm.name,
                zone=vm.zone.rsplit("/", 1)[-1],
                status=vm.status,
                run_id=run_id,
                attempt=attempt,
                age=_age(vm.creation_timestamp),
                owner=owner,
                run_state=run.state.value if run else None,
            )
        )
    return sorted(rows, key=lambda r: (r.run_id or "~", r.attempt or 0, r.name))


def delete_vm(ws: Workspace, project: str, row: VmRow) -> None:
    handle = {"project": project, "zone": row.zone, "name": row.name}
    if _endpoint(ws):
        handle["endpoint"] = str(_endpoint(ws))
    _backend().cancel(handle, 0)


def orphan_jobs(ws: Workspace, project: str) -> list[tuple[str, str, str]]:
    """Vertex CustomJobs relaunch started that still run but no live run owns:
    (job name, run id, region), in the regions relaunch.toml and the runs name."""
    from google.cloud.aiplatform_v1 import JobState

    from relaunch.backends.registry import get_backend
    from relaunch.backends.vertex.backend import regions

    runs = {r.run_id: r for r in ws.repo.runs()}
    places = {ws.config.gcp.region} | {
        region for r in runs.values() if r.backend == "vertex" for region in regions(r)
    }
    vertex: Any = get_backend("vertex")
    out = []
    for region in sorted(p for p in places if p):
        try:
            jobs = vertex.client(region, ws.config.gcp.endpoints).list_custom_jobs(
                request={"parent": f"projects/{project}/locations/{region}"}
            )
            found = list(jobs)
        except Exception as e:
            raise backend_error(e, f"listing the CustomJobs of {project} in {region}") from None
        for job in found:
            run_id = job.labels.get("relaunch-run-id")
            if not run_id or JobState(job.state).name not in _LIVE_JOB_STATES:
                continue
            run = runs.get(run_id)
            attempt = job.labels.get("relaunch-attempt")
            if run is None or run.state.terminal or str(run.attempt) != attempt:
                out.append((job.name, run_id, region))
    return out


def cancel_job(ws: Workspace, name: str, region: str) -> None:
    from relaunch.backends.registry import get_backend

    get_backend("vertex").cancel({"name": name, "region": region}, 0)


def stop_live_runs(ws: Workspace, wait: float = 60.0) -> list[tuple[str, RunState]]:
    """``relaunch stop`` every run that has not ended (``cleanup --all``)."""
    return [(r.run_id, ws.stop(r.run_id, wait=wait)) for r in ws.runs(include_ended=False)]


def _gce_handle(ws: Workspace, run_id: str, attempt: int | None) -> dict[str, Any]:
    run = ws.repo.get_run(run_id)
    if run.backend != "gce":
        raise UserInputError(
            f"run {run_id} runs on {run.backend}, not on a VM",
            hint=f"relaunch logs {run_id} --cloud shows the platform's log",
        )
    n = attempt or run.attempt
    found = ws.repo.find_attempt(run_id, n)
    if found is None or not found[0].handle:
        raise UserInputError(
            f"attempt {n} of run {run_id} has no VM (yet)",
            hint=f"relaunch status {run_id} says where it is",
        )
    return found[0].handle


def serial(
    ws: Workspace, run_id: str, *, attempt: int | None = None, start: int = 0
) -> tuple[str, int, str]:
    """The serial console of the run's VM from byte ``start``: (text, next start, VM)."""
    handle = _gce_handle(ws, run_id, attempt)
    text, nxt = _backend().serial(handle, start)
    return text, nxt, str(handle["name"])


def cloud_events(ws: Workspace, run_id: str) -> tuple[str, list[Event]]:
    """(project, the operations Google recorded on each of the run's VMs as events)."""
    from google.cloud.compute_v1 import Operation

    run = ws.repo.get_run(run_id)
    project = str(run.gcp.get("project") or gcp_project(ws))
    if run.backend != "gce":
        return project, []
    backend = _backend()
    out: list[Event] = []
    for attempt in ws.repo.attempts(run_id, run.attempt):
        if not attempt.handle:
            continue
        try:
            ops = backend.vm_operations(attempt.handle)
        except Exception as e:
            raise backend_error(e, f"listing the operations of {attempt.handle['name']}") from None
        for op in ops:
            when = op.end_time or op.insert_time
            stamp = dt.datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
            error = "; ".join(e.code for e in op.error.errors) if op.error else ""
            status = Operation.Status(op.status).name
            message = f"{op.operation_type} {attempt.handle['name']} ({status})" + (
                f": {error}" if error else ""
            )
            if op.user:
                message += f" by {op.user}"
            out.append(
                Event(
                    time=stamp,
                    kind="cloud",
                    message=message,
                    attempt=attempt.n,
                    data={"operation": op.name, "type": op.operation_type},
                )
            )
    return project, sorted(out, key=lambda e: e.time)
