"""Every Compute Engine instance status and zone operation → relaunch's states and reasons.

Statuses are looked up as ``compute_v1.Instance.Status`` members (the REST client
returns the name as text). A VM that ended is explained by the operations Google
recorded on it: ``compute.instances.preempted`` is a spot reclaim; a ``delete``,
``stop`` or ``suspend`` that relaunch did not ask for (its own cancels are recorded in
the attempt and win over this) is someone outside relaunch — the run ends STOPPED
with a note, never silently restarted; a guest that powered itself off is the start-up
script ending (the runtime's result, or the script's, says why).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.cloud.compute_v1 import Instance

from relaunch.backends.base import AttemptStatus
from relaunch.gcp.errors import classify_operation_errors
from relaunch.states import AttemptState, Reason

_S = Instance.Status  # proto enums: mypy sees the members as ints
_WAITING: dict[int, str] = {
    _S.UNDEFINED_STATUS: "Compute Engine has not reported a status yet",
    _S.PENDING: "Compute Engine is finding capacity for the VM",
    _S.PROVISIONING: "Compute Engine is allocating the VM",
    _S.STAGING: "the VM is booting",
}
_ALIVE: dict[int, str] = {
    _S.RUNNING: "the VM is running",
    _S.REPAIRING: "Compute Engine is repairing the VM's host",
    _S.STOPPING: "the VM is shutting down",
    _S.PENDING_STOP: "the VM is about to shut down",
    _S.SUSPENDING: "the VM is being suspended",
    _S.DEPROVISIONING: "the VM is being released",
}
_ENDED: dict[int, str] = {
    _S.TERMINATED: "the VM is stopped",
    _S.STOPPED: "the VM is stopped",
    _S.SUSPENDED: "the VM was suspended",
}
MAPPED: frozenset[int] = frozenset([*_WAITING, *_ALIVE, *_ENDED])

#: operation types that explain an ended VM, and what they mean
PREEMPTED_OP = "compute.instances.preempted"
OUTSIDE_OPS = {
    "delete": "deleted",
    "stop": "stopped",
    "suspend": "suspended",
}
HOST_ERROR_OP = "compute.instances.hostError"
GUEST_OP = "compute.instances.guestTerminate"


def instance_state(status: str) -> Instance.Status:
    """The member for a status name (a KeyError here is a status this code does not know)."""
    member = getattr(_S, status or "UNDEFINED_STATUS", None)
    if not isinstance(member, _S):
        raise KeyError(f"unmapped Compute Engine instance status {status!r}")
    return member


def status_of_instance(status: str) -> AttemptStatus | None:
    """The attempt's status for a VM that exists; None when it ended (ask its operations)."""
    state = instance_state(status)
    if state in _WAITING:
        return AttemptStatus(AttemptState.PENDING, detail=_WAITING[state])
    if state in _ALIVE:
        return AttemptStatus(AttemptState.RUNNING, detail=_ALIVE[state])
    if state not in _ENDED:
        raise KeyError(f"unmapped Compute Engine instance status {state.name}")
    return None


def _get(op: Any, key: str) -> Any:
    return op.get(key) if isinstance(op, dict) else getattr(op, key, None)


def insert_failure(op: Any) -> AttemptStatus | None:
    """The status of an insert whose operation ended with an error (stockout, quota)."""
    error = _get(op, "error")
    errors = list(_get(error, "errors") or []) if error else []
    if not errors:
        return None
    pairs = [(str(_get(e, "code") or ""), str(_get(e, "message") or "")) for e in errors]
    reason = classify_operation_errors(pairs)
    code, message = pairs[0]
    return AttemptStatus(
        AttemptState.ENDED, reason=reason, detail=f"Compute Engine: {code}: {message}"
    )


def ended_status(ops: Iterable[Any], vm_exists: bool) -> AttemptStatus:
    """Why a VM that is gone (or stopped) ended, from the operations on it."""
    kinds = {str(_get(op, "operation_type") or _get(op, "operationType") or "") for op in ops}
    if PREEMPTED_OP in kinds:
        return AttemptStatus(
            AttemptState.ENDED,
            reason=Reason.PREEMPTED,
            detail="Compute Engine reclaimed the spot VM (compute.instances.preempted)",
        )
    if HOST_ERROR_OP in kinds:
        return AttemptStatus(
            AttemptState.ENDED, reason=Reason.TRANSIENT, detail="the VM's host failed"
        )
    for kind, verb in OUTSIDE_OPS.items():
        if kind in kinds:
            return AttemptStatus(
                AttemptState.ENDED,
                reason=Reason.STOPPED,
                detail=f"the VM was {verb} outside relaunch (console, gcloud or the API); "
                "the run is not restarted",
            )
    where = "the VM powered off" if vm_exists else "the VM no longer exists"
    return AttemptStatus(AttemptState.ENDED, detail=where, runtime_knows_why=True)
