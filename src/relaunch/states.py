"""The shared vocabulary: run states, attempt reasons, recovery actions (DESIGN.md §3).

Standard library only: the runtime inside a job imports this.
"""

from __future__ import annotations

from enum import Enum


class RunState(str, Enum):
    QUEUED = "QUEUED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    RECOVERING = "RECOVERING"
    STOPPING = "STOPPING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"

    @property
    def terminal(self) -> bool:
        return self in (RunState.SUCCEEDED, RunState.FAILED, RunState.STOPPED)


class AttemptState(str, Enum):
    SUBMITTING = "SUBMITTING"  # intent recorded, backend call not yet confirmed
    PENDING = "PENDING"  # accepted by the backend, no heartbeat yet
    RUNNING = "RUNNING"
    ENDED = "ENDED"

    @property
    def terminal(self) -> bool:
        return self is AttemptState.ENDED


class Reason(str, Enum):
    """Why an attempt ended. One vocabulary for every backend."""

    SUCCEEDED = "succeeded"
    USER_ERROR = "user-error"
    PREEMPTED = "preempted"
    NO_CAPACITY = "no-capacity"
    QUOTA = "quota"
    PERMISSION = "permission"
    IMAGE_PULL = "image-pull"
    TRANSIENT = "transient"
    STALLED = "stalled"
    STARTUP_TIMEOUT = "startup-timeout"
    KILLED = "killed"  # the command was SIGKILLed from outside: the OOM killer's signature
    STOPPED = "stopped"


class Action(str, Enum):
    """What the recovery policy does after an attempt ends with a reason."""

    RETRY = "retry"  # same place, at once
    FAILOVER = "failover"  # next offer (zone/region); same place when there is no other
    BACKOFF = "backoff"  # same place, after an exponential delay
    FAIL = "fail"  # give up: the run is FAILED


# Reasons that count against max_recoveries (the cloud took the machine away); every
# other retried reason counts against max_restarts_on_errors.
RECOVERY_REASONS = frozenset(
    {Reason.PREEMPTED, Reason.NO_CAPACITY, Reason.TRANSIENT, Reason.KILLED}
)
# A command SIGKILLed this many attempts in a row without progress is not retried again:
# an out-of-memory kill comes back at the same step every time.
MAX_KILLED_STREAK = 3

DEFAULT_ACTIONS: dict[Reason, Action] = {
    Reason.PREEMPTED: Action.RETRY,
    Reason.NO_CAPACITY: Action.FAILOVER,
    Reason.QUOTA: Action.FAILOVER,
    Reason.TRANSIENT: Action.BACKOFF,
    Reason.STALLED: Action.RETRY,
    Reason.STARTUP_TIMEOUT: Action.FAILOVER,
    Reason.KILLED: Action.BACKOFF,
    Reason.USER_ERROR: Action.FAIL,
    Reason.PERMISSION: Action.FAIL,
    Reason.IMAGE_PULL: Action.FAIL,
}

# What a user should do about each reason: the note shown by `ps` and `status`.
REASON_NOTES: dict[Reason, str] = {
    Reason.SUCCEEDED: "finished",
    Reason.USER_ERROR: "the training command failed: read the last lines "
    "(relaunch status RUN) and fix the code or its arguments",
    Reason.PREEMPTED: "spot capacity was reclaimed; a recovery resumes from the last checkpoint",
    Reason.NO_CAPACITY: "no spot capacity in that zone/region (stockout); relaunch tries the "
    "next one — add regions or allow standard provisioning",
    Reason.QUOTA: "quota exceeded for that machine/accelerator in the region: request a quota "
    "increase (IAM & Admin > Quotas) or list other regions",
    Reason.PERMISSION: "permission denied: grant the service account the role named in the "
    "detail (e.g. roles/aiplatform.user, roles/storage.objectAdmin)",
    Reason.IMAGE_PULL: "the image could not be pulled: check it exists in Artifact Registry "
    "(relaunch images list) and the job's service account can read it",
    Reason.TRANSIENT: "a Google Cloud service error (500/503/429); retried with backoff",
    # Notes say what happened and what to do, never what relaunch did next: the same note
    # ends a FAILED run and precedes a recovery (the events say which).
    Reason.STALLED: "no heartbeat within stall_timeout: the trainer hung or its machine "
    "died; raise stall_timeout if a step can take longer",
    Reason.STARTUP_TIMEOUT: "no first heartbeat within startup_timeout (driver install, image "
    "pull or start-up too slow): raise startup_timeout; on the cloud, list more regions",
    Reason.KILLED: "the command was killed (SIGKILL), most often by the out-of-memory killer: "
    "lower the batch size or choose a machine with more memory",
    Reason.STOPPED: "stopped by request (.stop); not recovered (relaunch resume RUN continues it)",
}

# Where a backend's runs meet a reason otherwise, its note says so: a local run never
# meets a Google Cloud service error as its reason (it is a process whose runtime gave
# no result — killed from outside, its host lost — or an NCCL fault).
BACKEND_NOTES: dict[str, dict[Reason, str]] = {
    "local": {
        Reason.TRANSIENT: "a passing fault outside the command (its process killed from "
        "outside relaunch, its host lost, a network error): nothing to fix unless it "
        "repeats — the detail says which",
    },
}


def reason_note(reason: Reason, backend: str | None = None) -> str:
    """The note of ``reason`` for a run on ``backend``."""
    own = BACKEND_NOTES.get(backend or "", {}).get(reason)
    return own or REASON_NOTES.get(reason, reason.value)
