"""Every Vertex AI ``JobState`` → relaunch's attempt states and reasons.

States are compared as ``aiplatform_v1.JobState`` members, never as text: on Python
3.11+ proto-plus prints them as numbers, which is how W&B Launch's runner came to read
every state as "unknown".

What Vertex does when a Spot VM of a running training job is reclaimed (Google's
"Use Spot VMs with training" and "Understand the training service" pages): it may
restart the worker on another VM under the same hostname, with the job staying
RUNNING — the runtime then restores the last checkpoint inside the same attempt, and
the agent records a restart in place; or the job fails with a STOCKOUT error. A
stockout of a job that had started running is therefore a preemption; a stockout
before it ever ran is a lack of capacity (fail over to the next region).
"""

from __future__ import annotations

import re
from typing import Any

from google.cloud.aiplatform_v1 import JobState

from relaunch.backends.base import AttemptStatus
from relaunch.gcp.errors import classify_rpc_status
from relaunch.states import AttemptState, Reason

_S = JobState  # proto enums: mypy sees the members as ints
# Not yet running: (detail, the likely reason if it never starts).
_WAITING: dict[int, tuple[str, Reason | None]] = {
    _S.JOB_STATE_UNSPECIFIED: ("Vertex has not reported a state yet", None),
    _S.JOB_STATE_QUEUED: (
        "queued by Vertex: it holds jobs while the project lacks custom-training quota",
        Reason.QUOTA,
    ),
    _S.JOB_STATE_PENDING: ("Vertex is provisioning the machines and pulling the image", None),
}
# Alive: the runtime's heartbeat decides whether the attempt counts as running.
_ALIVE: dict[int, str] = {
    _S.JOB_STATE_RUNNING: "running",
    _S.JOB_STATE_CANCELLING: "cancelling",
    _S.JOB_STATE_UPDATING: "Vertex is updating the job",
    _S.JOB_STATE_PAUSED: "paused by Vertex",
}
_ENDED: dict[int, tuple[Reason | None, str]] = {
    _S.JOB_STATE_SUCCEEDED: (Reason.SUCCEEDED, "the CustomJob succeeded"),
    _S.JOB_STATE_FAILED: (None, ""),  # classified from job.error
    _S.JOB_STATE_CANCELLED: (
        Reason.STOPPED,
        "the CustomJob was cancelled outside relaunch (Cloud console, gcloud or the API)",
    ),
    _S.JOB_STATE_EXPIRED: (
        Reason.NO_CAPACITY,
        "the CustomJob expired waiting for capacity (max_wait)",
    ),
    _S.JOB_STATE_PARTIALLY_SUCCEEDED: (
        Reason.USER_ERROR,
        "the CustomJob partially succeeded: some replicas failed",
    ),
}
MAPPED: frozenset[int] = frozenset([*_WAITING, *_ALIVE, *_ENDED])


def has_started(job: Any) -> bool:
    """Whether the job ever reached RUNNING (Vertex sets start_time then)."""
    start = getattr(job, "start_time", None)
    return start is not None and bool(start) and start.timestamp() > 0


_EXITED = re.compile(r"exited with a non-zero status", re.IGNORECASE)


def failure(job: Any) -> AttemptStatus:
    """The status of a FAILED job, from its ``error`` (a google.rpc.Status)."""
    code, message = int(job.error.code), str(job.error.message)
    reason = classify_rpc_status(code, message)
    if reason is Reason.NO_CAPACITY and has_started(job):
        reason = Reason.PREEMPTED  # a running Spot job whose VM was reclaimed
    return AttemptStatus(
        AttemptState.ENDED,
        reason=reason,
        detail=f"Vertex: {message or 'failed'} (code {code})",
        runtime_knows_why=bool(_EXITED.search(message)),
    )


def attempt_status(job: Any) -> AttemptStatus:
    """The attempt's status from a ``CustomJob`` just read."""
    state = JobState(job.state)
    if state in _WAITING:
        detail, pending = _WAITING[state]
        return AttemptStatus(AttemptState.PENDING, detail=detail, pending_reason=pending)
    if state in _ALIVE:
        return AttemptStatus(AttemptState.RUNNING, detail=_ALIVE[state])
    reason, detail = _ENDED[state]  # a KeyError here is a state this code does not know
    if reason is None:
        return failure(job)
    return AttemptStatus(AttemptState.ENDED, reason=reason, detail=detail)
