"""Compute v1 zone operations, regions (quotas) and accelerator types.

Operations go PENDING → RUNNING → DONE; an operation whose work failed is DONE with
``error.errors`` and ``httpErrorStatusCode`` — that is where a stockout
(``ZONE_RESOURCE_POOL_EXHAUSTED``, 503) or an asynchronous ``QUOTA_EXCEEDED`` (403)
shows up, when the insert operation is polled. ``wait`` blocks up to 2 s (Google: up
to 2 minutes) until the operation is DONE.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from tests.fakegcp.common import matcher, new_id, now, page
from tests.fakegcp.server import FakeError, Request, Router

if TYPE_CHECKING:
    from tests.fakegcp.fake import FakeGCP

BASE = "/compute/v1/projects/(?P<project>[^/]+)"
LINK = "https://www.googleapis.com/compute/v1/projects"

DEFAULT_REGIONS = {
    "us-central1": ["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"],
    "us-east1": ["us-east1-b", "us-east1-c", "us-east1-d"],
    "europe-west4": ["europe-west4-a", "europe-west4-b", "europe-west4-c"],
}
DEFAULT_QUOTAS = {"CPUS": 24.0, "NVIDIA_T4_GPUS": 4.0, "PREEMPTIBLE_NVIDIA_T4_GPUS": 8.0}
DEFAULT_ACCELERATORS = ["nvidia-tesla-t4", "nvidia-l4"]


class ComputeOps:
    """Zone operations plus the read-only region and accelerator catalogue."""

    def __init__(self, fake: FakeGCP) -> None:
        self.fake = fake
        self.lock = threading.RLock()
        self.operations: dict[tuple[str, str], dict[str, Any]] = {}  # (zone, name) → resource
        self._due: dict[tuple[str, str], tuple[float, Any]] = {}  # when to finish, and how
        self.regions: dict[str, list[str]] = {k: list(v) for k, v in DEFAULT_REGIONS.items()}
        self.quotas: dict[str, dict[str, float]] = {r: dict(DEFAULT_QUOTAS) for r in self.regions}
        self.accelerators: dict[str, list[str]] = {
            z: list(DEFAULT_ACCELERATORS) for zones in self.regions.values() for z in zones
        }

    def region_of(self, zone: str) -> str:
        for region, zones in self.regions.items():
            if zone in zones:
                return region
        raise FakeError(400, f"Invalid value for field 'zone': '{zone}'. Unknown zone.")

    # -- operations ------------------------------------------------------------

    def start(
        self,
        project: str,
        zone: str,
        kind: str,
        target: str,
        finish: Any = None,
        *,
        done: bool = False,
        message: str | None = None,
    ) -> dict[str, Any]:
        """A new operation; ``finish()`` runs when it completes and may return an error
        ``(http_status, code, message)``."""
        name = f"operation-{new_id()}"
        op: dict[str, Any] = {
            "kind": "compute#operation",
            "id": new_id(),
            "name": name,
            "zone": f"{LINK}/{project}/zones/{zone}",
            "operationType": kind,
            "targetLink": target,
            "status": "PENDING",
            "progress": 0,
            "insertTime": now(),
            "selfLink": f"{LINK}/{project}/zones/{zone}/operations/{name}",
            "user": "fake@fake-project.iam.gserviceaccount.com",
        }
        if message:
            op["statusMessage"] = message
        with self.lock:
            self.operations[(zone, name)] = op
            if done:
                self._complete(op, finish)
            else:
                self._due[(zone, name)] = (time.monotonic() + 2 * self.fake.step, finish)
            return dict(op)

    def _complete(self, op: dict[str, Any], finish: Any) -> None:
        error = finish() if finish else None
        op.update(status="DONE", progress=100, endTime=now())
        op.setdefault("startTime", op["insertTime"])
        if error:
            status, code, message = error
            op["error"] = {"errors": [{"code": code, "message": message}]}
            op["httpErrorStatusCode"] = status
            op["httpErrorMessage"] = {403: "FORBIDDEN", 503: "SERVICE UNAVAILABLE"}.get(
                status, "BAD REQUEST"
            )

    def tick(self) -> None:
        t = time.monotonic()
        with self.lock:
            for key, (when, finish) in list(self._due.items()):
                op = self.operations[key]
                if op["status"] == "PENDING":
                    op.update(status="RUNNING", startTime=now(), progress=50)
                if t >= when:
                    del self._due[key]
                    self._complete(op, finish)

    def register(self, router: Router) -> None:
        ops = BASE + r"/zones/(?P<zone>[^/]+)/operations"
        router.add("compute", "GET", ops + r"/(?P<name>[^/]+)", self.get)
        router.add("compute", "POST", ops + r"/(?P<name>[^/]+)/wait", self.wait)
        router.add("compute", "GET", ops, self.list)
        router.add("compute", "GET", BASE + r"/regions/(?P<region>[^/]+)", self.get_region)
        router.add("compute", "GET", BASE + r"/aggregated/acceleratorTypes", self.accelerator_types)

    def _op(self, zone: str, name: str) -> dict[str, Any]:
        op = self.operations.get((zone, name))
        if op is None:
            raise FakeError(
                404, f"The resource 'operations/{name}' was not found", reason="notFound"
            )
        return op

    def get(self, req: Request, project: str, zone: str, name: str) -> dict[str, Any]:
        with self.lock:
            return dict(self._op(zone, name))

    def wait(self, req: Request, project: str, zone: str, name: str) -> dict[str, Any]:
        deadline = time.monotonic() + 2.0
        while True:
            with self.lock:
                op = dict(self._op(zone, name))
            if op["status"] == "DONE" or time.monotonic() > deadline:
                return op
            time.sleep(0.01)

    def list(self, req: Request, project: str, zone: str) -> dict[str, Any]:
        keep = matcher(req.query.get("filter", ""))
        with self.lock:
            items = [dict(op) for (z, _), op in self.operations.items() if z == zone and keep(op)]
        return {"kind": "compute#operationList", **page(req, items, "items", 500)}

    def get_region(self, req: Request, project: str, region: str) -> dict[str, Any]:
        if region not in self.regions:
            raise FakeError(
                404, f"The resource 'projects/{project}/regions/{region}' was not found"
            )
        quotas = self.quotas.get(region, {})
        used = self.fake.compute.usage(region)
        return {
            "kind": "compute#region",
            "name": region,
            "status": "UP",
            "selfLink": f"{LINK}/{project}/regions/{region}",
            "zones": [f"{LINK}/{project}/zones/{z}" for z in self.regions[region]],
            "quotas": [
                {"metric": m, "limit": limit, "usage": used.get(m, 0.0)}
                for m, limit in quotas.items()
            ],
        }

    def accelerator_types(self, req: Request, project: str) -> dict[str, Any]:
        items = {
            f"zones/{zone}": {
                "acceleratorTypes": [
                    {
                        "kind": "compute#acceleratorType",
                        "name": name,
                        "zone": f"{LINK}/{project}/zones/{zone}",
                        "maximumCardsPerInstance": 4,
                        "selfLink": f"{LINK}/{project}/zones/{zone}/acceleratorTypes/{name}",
                    }
                    for name in names
                ]
            }
            for zone, names in sorted(self.accelerators.items())
        }
        return {"kind": "compute#acceleratorTypeAggregatedList", "items": items}
