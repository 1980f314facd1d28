"""Cloud Logging v2 ``entries:list``: the output of every workload the fake ran.

Each line a workload printed is one entry, with the resource a real one would carry:
``ml_job`` (``resource.labels.job_id``) for Vertex jobs, ``gce_instance``
(``resource.labels.instance_id``) for VMs, ``cloud_run_job`` (``job_name``) for Cloud
Run. ``filter`` takes ``a.b="v" AND ...`` terms on those fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.fakegcp.common import matcher, now
from tests.fakegcp.schemas import validate
from tests.fakegcp.server import Request, Router

if TYPE_CHECKING:
    from tests.fakegcp.fake import FakeGCP


class LoggingService:
    def __init__(self, fake: FakeGCP) -> None:
        self.fake = fake

    def register(self, router: Router) -> None:
        router.add("logging", "POST", r"/v2/entries:list", self.list)

    def _sources(self) -> list[tuple[dict[str, Any], str]]:
        fake, out = self.fake, []
        with fake.vertex.lock:
            for name, job in fake.vertex.jobs.items():
                if job.workload is not None:
                    labels = {"job_id": name.rsplit("/", 1)[-1], "task_name": "workerpool0-0"}
                    out.append(({"type": "ml_job", "labels": labels}, job.workload.output()))
        with fake.compute.lock:
            for vm in fake.compute.vms.values():
                if vm.workload is not None:
                    labels = {"instance_id": vm.resource["id"], "zone": vm.zone}
                    out.append(({"type": "gce_instance", "labels": labels}, vm.workload.output()))
        with fake.run.lock:
            for name, workload in fake.run.workloads.items():
                if workload is not None:
                    labels = {"job_name": fake.run.executions[name]["job"]}
                    out.append(({"type": "cloud_run_job", "labels": labels}, workload.output()))
        return out

    def list(self, req: Request) -> dict[str, Any]:
        body = validate("logging.v2", "ListLogEntriesRequest", req.json())
        keep = matcher(body.get("filter", ""))
        entries = []
        for resource, text in self._sources():
            for i, line in enumerate(text.splitlines()):
                entry = {
                    "logName": f"projects/{self.fake.project}/logs/stdout",
                    "resource": resource,
                    "textPayload": line,
                    "timestamp": now(),
                    "insertId": f"{resource['type']}-{i}",
                }
                if keep(entry):
                    entries.append(entry)
        if body.get("orderBy", "timestamp asc").endswith("desc"):
            entries.reverse()
        size, start = int(body.get("pageSize") or 1000), int(body.get("pageToken") or 0)
        out: dict[str, Any] = {"entries": entries[start : start + size]}
        if start + size < len(entries):
            out["nextPageToken"] = str(start + size)
        return out
