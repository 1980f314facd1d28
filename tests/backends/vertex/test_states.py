"""Every JobState maps to an attempt state; failures are classified from job.error —
with the real aiplatform_v1 types, never states faked as strings."""

from __future__ import annotations

import datetime as dt

import pytest
from google.cloud.aiplatform_v1 import CustomJob, JobState
from google.rpc import status_pb2

from relaunch.backends.vertex.states import MAPPED, attempt_status
from relaunch.states import AttemptState, Reason

S = JobState


def job(state: JobState, code: int = 0, message: str = "", started: bool = False) -> CustomJob:
    out = CustomJob(state=state)
    if code:
        out.error = status_pb2.Status(code=code, message=message)
    if started:
        out.start_time = dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.timezone.utc)
    return out


def test_every_job_state_the_library_knows_is_mapped() -> None:
    assert set(JobState) == set(MAPPED)  # a new state in a new library version fails here
    for state in JobState:
        status = attempt_status(job(state, 13, "internal"))
        assert isinstance(status.state, AttemptState)
        assert (status.reason is not None) == (status.state is AttemptState.ENDED)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (S.JOB_STATE_QUEUED, AttemptState.PENDING),
        (S.JOB_STATE_PENDING, AttemptState.PENDING),
        (S.JOB_STATE_RUNNING, AttemptState.RUNNING),
        (S.JOB_STATE_CANCELLING, AttemptState.RUNNING),  # still running until CANCELLED
        (S.JOB_STATE_UPDATING, AttemptState.RUNNING),
        (S.JOB_STATE_PAUSED, AttemptState.RUNNING),
    ],
)
def test_live_states(state: JobState, expected: AttemptState) -> None:
    assert attempt_status(job(state)).state is expected


def test_quota_queued_job_names_quota_as_the_reason_if_it_never_starts() -> None:
    status = attempt_status(job(S.JOB_STATE_QUEUED))
    assert status.pending_reason is Reason.QUOTA and "quota" in (status.detail or "")
    assert attempt_status(job(S.JOB_STATE_PENDING)).pending_reason is None


@pytest.mark.parametrize(
    ("state", "reason", "words"),
    [
        (S.JOB_STATE_SUCCEEDED, Reason.SUCCEEDED, "succeeded"),
        (S.JOB_STATE_CANCELLED, Reason.STOPPED, "cancelled outside relaunch"),
        (S.JOB_STATE_EXPIRED, Reason.NO_CAPACITY, "expired"),
        (S.JOB_STATE_PARTIALLY_SUCCEEDED, Reason.USER_ERROR, "some replicas failed"),
    ],
)
def test_ended_states(state: JobState, reason: Reason, words: str) -> None:
    status = attempt_status(job(state))
    assert status.state is AttemptState.ENDED and status.reason is reason
    assert words in (status.detail or "")


@pytest.mark.parametrize(
    ("code", "message", "started", "reason"),
    [
        # Spot reclaim of a running job: Vertex reports it as a STOCKOUT.
        (8, "STOCKOUT: Resources are insufficient in us-central1", True, Reason.PREEMPTED),
        # The same error before the job ever ran: no capacity, fail over.
        (8, "STOCKOUT: Resources are insufficient in us-central1", False, Reason.NO_CAPACITY),
        (14, "The replica workerpool0-0 was preempted", True, Reason.PREEMPTED),
        (3, "The replica workerpool0-0 exited with a non-zero status of 1.", True,
         Reason.USER_ERROR),
        (3, "Unable to pull image us-docker.pkg.dev/p/r/t:1: manifest unknown", False,
         Reason.IMAGE_PULL),
        (7, "Permission 'aiplatform.customJobs.create' denied", False, Reason.PERMISSION),
        (8, "The following quota metrics exceed quota limits: custom_model_training_cpus",
         False, Reason.QUOTA),
        (13, "Internal error occurred", True, Reason.TRANSIENT),
    ],
)  # fmt: skip
def test_failed_jobs_are_classified(code: int, message: str, started: bool, reason: Reason) -> None:
    status = attempt_status(job(S.JOB_STATE_FAILED, code, message, started))
    assert status.state is AttemptState.ENDED and status.reason is reason
    assert message in (status.detail or "") and f"code {code}" in (status.detail or "")
