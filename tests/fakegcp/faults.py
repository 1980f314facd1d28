"""Scriptable faults: what the fake cloud does wrong, and when.

Request faults answer before the route runs (so nothing changes server-side, as when
Google's front end rejects a call):

- ``fail(api, times=N, status=503)``: N errors, then success.
- ``rate_limit(api, times=N)``: N answers 429 ``rateLimitExceeded``.
- ``fail(..., after=True)``: the call takes effect, then its answer is lost (a 503),
  the case that makes retried conditional writes ambiguous.
- ``deny(api, permission)``: 403 ``PERMISSION_DENIED`` naming the permission (until cleared).
- ``drop(api, times=N)``: the call takes effect, and its connection breaks half way
  through the answer (status and headers sent, half the body, then the socket closed).

Cloud faults are consulted by the services where Google reports them:

- ``stockout(zone=...)``: a compute insert in the zone fails when its operation is
  polled (``ZONE_RESOURCE_POOL_EXHAUSTED``, HTTP 503 in the operation);
  ``stockout(region=...)`` fails Vertex jobs in the region (``RESOURCE_EXHAUSTED``).
- ``quota(region, sync=True)``: compute insert → synchronous 403 ``quotaExceeded``;
  ``sync=False``: the insert operation ends with ``QUOTA_EXCEEDED``. Vertex creates in
  the region answer 429 ``RESOURCE_EXHAUSTED`` "Quota exceeded for ...".
- ``image_pull(image)``: a job / instance / execution whose image contains ``image``
  fails to start with an image pull error.

Every fault takes ``times`` (None = until :meth:`clear`); matched ones count down.
Request faults also take ``share`` (a fraction of the matching requests, drawn from
:meth:`Faults.seed`'s generator; None = every one) and ``via`` (only requests that came
through that endpoint, ``fake.add_endpoint``), so a chaos test can fail 1 % of one
client's calls at random while the others go through.
Preemptions are events on the resources: ``fake.vertex.preempt`` /
``fake.compute.preempt`` (at a chosen time, with a notice period).
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from tests.fakegcp.server import Drop, FakeError, Request


@dataclass
class Fault:
    kind: str
    api: str | None = None
    times: int | None = None
    method: str | None = None
    path: str | None = None  # regex searched in the decoded path
    where: str | None = None  # zone, region or image substring
    status: int = 503
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    hits: int = 0
    after: bool = False
    share: float | None = None  # of the matching requests (None: every one)
    via: str | None = None  # only requests through this endpoint

    def matches_request(self, api: str, req: Request) -> bool:
        return (
            (self.api is None or self.api == api)
            and (self.method is None or self.method == req.method)
            and (self.path is None or re.search(self.path, req.path) is not None)
            and (self.via is None or self.via == req.via)
        )


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._random = random.Random()

    def seed(self, seed: int) -> None:
        """Seed the draws of faults that hit a ``share`` of their requests."""
        with self._lock:
            self._random.seed(seed)

    def _add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take(self, kind: str, pred: Any) -> Fault | None:
        """The first live fault of ``kind`` satisfying ``pred``, counted as used."""
        with self._lock:
            for fault in self._faults:
                live = fault.times is None or fault.times > 0
                if not (fault.kind == kind and live and pred(fault)):
                    continue
                if fault.share is None or self._random.random() < fault.share:
                    if fault.times is not None:
                        fault.times -= 1
                    fault.hits += 1
                    return fault
        return None

    # -- request faults --------------------------------------------------------

    def fail(
        self,
        api: str,
        *,
        times: int | None = 1,
        status: int = 503,
        method: str | None = None,
        path: str | None = None,
        message: str = "The service is currently unavailable.",
        after: bool = False,
        share: float | None = None,
        via: str | None = None,
    ) -> Fault:
        fault = Fault("http", api, times, method, path, status=status, message=message)
        fault.after, fault.share, fault.via = after, share, via
        return self._add(fault)

    def rate_limit(
        self, api: str, *, times: int | None = 1, method: str | None = None, path: str | None = None
    ) -> Fault:
        msg = "Quota exceeded for quota metric 'Requests' and limit 'Requests per minute'."
        fault = Fault("http", api, times, method, path, status=429, message=msg)
        fault.extra["reason"] = "rateLimitExceeded"
        return self._add(fault)

    def deny(
        self,
        api: str,
        permission: str,
        *,
        times: int | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> Fault:
        msg = f"Permission '{permission}' denied on resource (or it may not exist)."
        fault = Fault("http", api, times, method, path, status=403, message=msg)
        fault.extra.update(reason="forbidden", permission=permission)
        return self._add(fault)

    def drop(
        self,
        api: str,
        *,
        times: int | None = 1,
        method: str | None = None,
        path: str | None = None,
        share: float | None = None,
        via: str | None = None,
    ) -> Fault:
        return self._add(Fault("drop", api, times, method, path, share=share, via=via))

    def intercept(self, api: str, req: Request) -> FakeError | Drop | None:
        """Raise the error of the first matching request fault (the router's hook), or
        return it when it is to be sent after the call took effect."""
        if self._take("drop", lambda f: f.matches_request(api, req)) is not None:
            return Drop()
        fault = self._take("http", lambda f: f.matches_request(api, req))
        if fault is None:
            return None
        details = []
        if "permission" in fault.extra:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "IAM_PERMISSION_DENIED",
                    "domain": f"{api}.googleapis.com",
                    "metadata": {"permission": fault.extra["permission"]},
                }
            )
        error = FakeError(
            fault.status,
            fault.message,
            reason=fault.extra.get("reason", "backendError" if fault.status >= 500 else None),
            details=details,
        )
        if fault.after:
            return error
        raise error

    # -- cloud faults ------------------------------------------------------------

    def stockout(
        self, *, zone: str | None = None, region: str | None = None, times: int | None = None
    ) -> Fault:
        if (zone is None) == (region is None):
            raise ValueError("stockout needs exactly one of zone= or region=")
        return self._add(Fault("stockout", times=times, where=zone or region))

    def quota(
        self,
        region: str,
        *,
        sync: bool = True,
        metric: str = "NVIDIA_T4_GPUS",
        times: int | None = None,
    ) -> Fault:
        fault = Fault("quota", times=times, where=region)
        fault.extra.update(sync=sync, metric=metric)
        return self._add(fault)

    def image_pull(self, image: str, *, times: int | None = None) -> Fault:
        return self._add(Fault("image_pull", times=times, where=image))

    def active(self, kind: str, where: str, **extra: Any) -> bool:
        """Whether a live ``kind`` fault for ``where`` exists (without using it up)."""
        with self._lock:
            return any(
                f.kind == kind
                and f.where == where
                and (f.times is None or f.times > 0)
                and all(f.extra.get(k) == v for k, v in extra.items())
                for f in self._faults
            )

    def take_stockout(self, zone_or_region: str) -> bool:
        """True when a placement in ``zone_or_region`` (or a zone of that region) stocks out."""
        return (
            self._take("stockout", lambda f: zone_or_region.startswith(f.where or "~")) is not None
        )

    def take_quota(self, region: str, *, sync: bool) -> Fault | None:
        return self._take("quota", lambda f: f.where == region and bool(f.extra["sync"]) == sync)

    def take_image_pull(self, image: str) -> bool:
        return self._take("image_pull", lambda f: (f.where or "") in image) is not None
