"""Every Compute Engine instance status maps to an attempt state; an ended VM is
explained by its operations — with the real compute_v1 types."""

from __future__ import annotations

import pytest
from google.cloud.compute_v1 import Error, Errors, Instance, Operation

from relaunch.backends.gce.states import (
    MAPPED,
    ended_status,
    insert_failure,
    instance_state,
    status_of_instance,
)
from relaunch.states import AttemptState, Reason


def test_every_instance_status_the_library_knows_is_mapped() -> None:
    assert set(Instance.Status) == set(MAPPED)  # a new status in a new library fails here
    for status in Instance.Status:
        found = status_of_instance(status.name)
        assert found is None or found.state in (AttemptState.PENDING, AttemptState.RUNNING)


def test_an_unknown_status_is_an_error_not_a_guess() -> None:
    with pytest.raises(KeyError, match="HIBERNATING"):
        instance_state("HIBERNATING")


@pytest.mark.parametrize(
    ("status", "state"),
    [("PROVISIONING", AttemptState.PENDING), ("STAGING", AttemptState.PENDING),
     ("RUNNING", AttemptState.RUNNING), ("STOPPING", AttemptState.RUNNING),
     ("TERMINATED", None), ("SUSPENDED", None)],
)  # fmt: skip
def test_statuses(status: str, state: AttemptState | None) -> None:
    found = status_of_instance(status)
    assert (found.state if found else None) is state


def op(kind: str) -> Operation:
    return Operation(operation_type=kind, status=Operation.Status.DONE)


@pytest.mark.parametrize(
    ("kinds", "reason", "needle"),
    [
        (["insert", "compute.instances.preempted"], Reason.PREEMPTED, "reclaimed"),
        (["insert", "compute.instances.preempted", "delete"], Reason.PREEMPTED, "reclaimed"),
        (["insert", "delete"], Reason.STOPPED, "deleted outside relaunch"),
        (["insert", "stop"], Reason.STOPPED, "stopped outside relaunch"),
        (["insert", "compute.instances.hostError"], Reason.TRANSIENT, "host failed"),
        (["insert", "compute.instances.guestTerminate"], None, "powered off"),
    ],
)
def test_an_ended_vm_is_explained_by_its_operations(
    kinds: list[str], reason: Reason | None, needle: str
) -> None:
    status = ended_status([op(k) for k in kinds], vm_exists=True)
    assert status.state is AttemptState.ENDED and status.reason is reason
    assert needle in (status.detail or "")
    assert status.runtime_knows_why is (reason is None)


@pytest.mark.parametrize(
    ("code", "reason"),
    [("ZONE_RESOURCE_POOL_EXHAUSTED", Reason.NO_CAPACITY),
     ("ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", Reason.NO_CAPACITY),
     ("QUOTA_EXCEEDED", Reason.QUOTA)],
)  # fmt: skip
def test_insert_operation_errors(code: str, reason: Reason) -> None:
    failed = Operation(error=Error(errors=[Errors(code=code, message="no")]))
    status = insert_failure(failed)
    assert status is not None and status.reason is reason and code in (status.detail or "")
    assert insert_failure(Operation()) is None
