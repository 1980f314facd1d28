"""What the store holds about a run: the run record, its attempts, heartbeat, events.

These models are the wire format of ``runs/<run_id>/…`` (DESIGN.md §2). The runtime
inside a job writes heartbeats and results as plain JSON with the same field names
(it does not import pydantic, to start fast).
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from relaunch.runs.keys import RUN_ID_RE
from relaunch.spec.job import JobSpec
from relaunch.states import AttemptState, Reason, RunState, reason_note


class Record(BaseModel):
    # Stored records tolerate fields from newer versions of relaunch.
    # Built on first use: `relaunch run` needs only RunRecord and Event of them.
    model_config = ConfigDict(extra="ignore", defer_build=True)


class RunRecord(Record):
    run_id: str = Field(..., pattern=RUN_ID_RE.pattern)
    name: str
    queue: str
    priority: int = 0
    backend: str
    spec: JobSpec
    base_dir: str | None = Field(None, description="job.yaml's folder (local backend workdir)")
    project: dict[str, str | None] = Field(default_factory=dict)
    gcp: dict[str, Any] = Field(
        default_factory=dict, description="[gcp] of relaunch.toml when queued (cloud backends)"
    )
    image_uri: str | None = None
    state: RunState = RunState.QUEUED
    attempt: int = 0  # the current (latest) attempt number; 0 before the first
    decided: int = 0  # the latest attempt whose outcome the policy has applied
    recoveries: int = 0
    restarts: int = 0
    offer_index: int = 0
    where: str | None = None  # the current attempt's place (host, zone, region)
    step: int | None = None  # last step seen when an attempt ended (live: the heartbeat)
    total: int | None = None
    not_before: float | None = None  # backoff: no new attempt before this time
    reason: Reason | None = None  # the last attempt's reason (final once terminal)
    note: str | None = None
    detail: str | None = None
    owner: str | None = None
    #: a random id of this submission, also in its queue item: tells the enqueuer that a
    #: record an agent created from its item (before its own write landed) is its own
    nonce: str | None = None
    killed_streak: int = 0  # attempts in a row whose command was SIGKILLed (OOM?)
    #: False between a run's terminal write and its run-ended event (written next)
    ended_event: bool = True
    job_file: str | None = None  # the job.yaml it was queued from (`resume --set` reads it)
    template_values: dict[str, str] = Field(default_factory=dict)  # its --set values
    resumes: int = 0  # times it was queued again after it ended (`relaunch resume`)
    resumed_at: float | None = None
    resumed_by: str | None = None
    #: the first attempt since the last resume: its recovery budget counts from there
    first_attempt: int = 1
    why: str | None = None  # the policy's reason for the final state (run-ended event)
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None

    def with_note(
        self, reason: Reason | None, detail: str | None = None, *, started: bool = True
    ) -> None:
        """Set the reason, its note and the detail. A user error of a command that never
        started (a secret not set, a program gone) is noted with its detail, which says
        what to fix, not as a training command that failed."""
        self.reason = reason
        self.note = reason_note(reason, self.backend) if reason else None
        if reason is Reason.USER_ERROR and not started and detail:
            self.note = f"the command did not start: {detail}"
        self.detail = detail


class PreemptionSim(Record):
    """A simulated spot preemption in progress (local backend)."""

    requested_at: float
    notice: float
    kill_at: float
    source: str = "spec"


class AttemptRecord(Record):
    run_id: str
    n: int
    backend: str
    state: AttemptState = AttemptState.SUBMITTING
    #: the fencing token of the submission in force: written (by compare-and-swap, under a
    #: freshly confirmed lease) before the backend is asked to start the attempt; the
    #: runtime runs its command only while this is its own token
    token: str | None = None
    submitter: str | None = None  # the agent that wrote ``token``
    handle: dict[str, Any] | None = None
    placement: dict[str, Any] = Field(default_factory=dict)
    submitted_at: float = Field(default_factory=time.time)
    running_at: float | None = None
    ended_at: float | None = None
    reason: Reason | None = None
    detail: str | None = None
    exit_code: int | None = None
    last_lines: list[str] = Field(default_factory=list)
    first_step: int | None = None  # step of the first heartbeat (shows a resume)
    last_step: int | None = None
    total: int | None = None
    cancel_reason: Reason | None = None  # why relaunch cancelled it (stop, watchdog)
    cancel_requested_at: float | None = None
    preemption: PreemptionSim | None = None
    preempt_triggers_fired: list[int] = Field(default_factory=list)
    instance: str | None = None  # the runtime instance last heard from
    restarts_in_place: int = 0  # container restarts the platform did within the attempt


class Heartbeat(Record):
    time: float
    attempt: int
    step: int | None = None
    total: int | None = None
    host: str | None = None
    pid: int | None = None
    phase: str = "running"
    resumed_from: int | None = None
    idle: float | None = None  # seconds the command has been silent (no output, no report)
    instance: str | None = None  # random id of the runtime process: changes on a restart
    token: str | None = None  # the fencing token of the runtime that wrote it


class AttemptResult(Record):
    """Written by the runtime when its command exits."""

    attempt: int
    exit_code: int | None = None
    signal: str | None = None
    reason: Reason | None = None
    detail: str | None = None
    last_lines: list[str] = Field(default_factory=list)
    final_step: int | None = None
    ended_at: float = Field(default_factory=time.time)


class Event(Record):
    time: float
    kind: str
    message: str
    attempt: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)


#: The kind of the stand-in ``RunRepo.events(damaged=True)`` gives for an event object
#: that cannot be read.
DAMAGED_EVENT = "damaged-event"
#: the time an event's key is named by (``add_event``), in nanoseconds
_EVENT_NS = re.compile(r"/(\d{19,20})-[^/]*$")
#: times a user's clock can print (before year 10000)
_LAST_TIME = 253402300800.0


def a_time(t: float) -> bool:
    """Whether ``t`` is a time a clock can print (a damaged record may hold any float)."""
    return math.isfinite(t) and 0 <= t < _LAST_TIME


def damaged_event(key: str, updated_ns: int, why: str) -> Event:
    """An event object that cannot be read, as an event in its place: when it was
    written (its key says; else the object's own time), which object, and why."""
    named = _EVENT_NS.search(key)
    t = int(named.group(1)) / 1e9 if named else updated_ns / 1e9
    message = f"(event {key} is damaged: {why})"
    return Event(
        time=t if a_time(t) else 0.0,
        kind=DAMAGED_EVENT,
        message=message,
        data={"key": key, "why": why},
    )
