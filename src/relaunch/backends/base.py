"""The backend contract: where an attempt runs.

A backend turns one attempt of a run into something running (a local process group, a
Vertex AI CustomJob, a spot VM), reports its state, and cancels it. It keeps no state
of its own between calls: everything it needs comes back in the *handle* it returned
from ``submit``, which the agent stores in the attempt record. That is what lets any
agent, on any machine, pick up a run where a dead one left it.

Optional abilities are small interfaces found with ``isinstance``
(:class:`SimulatesPreemption`, :class:`FindsAttempts`), not boolean flags.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard, runtime_checkable

from relaunch.runs.records import AttemptRecord, RunRecord
from relaunch.states import AttemptState, Reason
from relaunch.store.base import ObjectStore

Handle = dict[str, Any]
Placement = dict[str, Any]


@dataclass(frozen=True)
class AttemptStatus:
    """What a backend knows about an attempt right now.

    ``reason`` is set when ``state`` is ENDED. ``reason=None`` on an ended attempt means
    the backend cannot tell why (e.g. a local process that vanished); the agent then
    uses the runtime's result or its own cancel reason.
    """

    state: AttemptState
    reason: Reason | None = None
    detail: str | None = None
    exit_code: int | None = None
    #: for an attempt not yet running: the likely reason if it never starts (e.g. a job
    #: Vertex holds in QUEUED for lack of quota); the startup watchdog ends it with this
    pending_reason: Reason | None = None
    #: the platform only knows the container exited non-zero: the runtime's own result
    #: (a missing secret, an out-of-memory, a preemption notice) says why
    runtime_knows_why: bool = False


@dataclass
class SubmitContext:
    """Everything ``submit`` needs besides the run and the attempt."""

    store: ObjectStore
    command: list[str]  # macros resolved
    env: dict[str, str] = field(default_factory=dict)  # resolved, non-secret environment
    placement: dict[str, Any] = field(default_factory=dict)
    image_uri: str | None = None
    macros: dict[str, str] = field(default_factory=dict)  # ${run_id}… for backend config
    token: str | None = None  # the submission's fencing token (RELAUNCH_FENCE in the job)


class Backend(ABC):
    """One place attempts run. Subclasses implement the four calls below."""

    name: str = ""
    #: seconds between polls of one attempt; the agent never polls faster
    poll_interval: float = 1.0
    #: Whether its calls may be made from several threads at once: an agent on a bucket
    #: then polls its attempts ahead of a tick (agent/prefetch.py) and reconciles its
    #: runs concurrently (agent/workers.py); else one after another.
    thread_safe: bool = False

    @abstractmethod
    def submit(self, run: RunRecord, attempt: AttemptRecord, ctx: SubmitContext) -> Handle:
        """Start the attempt and return its handle as soon as the platform accepted it —
        do not wait for it to run. Raise BackendError(reason=…) with a classified reason
        when the platform refuses (quota, permission, no capacity, transient)."""

    @abstractmethod
    def poll(self, handle: Handle) -> AttemptStatus:
        """The attempt's state now. Never raises for an attempt that no longer exists:
        that is an ENDED status. Raises BackendError(reason=TRANSIENT) when the platform
        cannot be asked right now; the agent simply asks again next time."""

    @abstractmethod
    def cancel(self, handle: Handle, grace: float) -> None:
        """Ask the attempt to end: the command gets SIGTERM and ``grace`` seconds before
        it is killed. Returns at once; an attempt already gone is not an error."""

    def logs(self, handle: Handle) -> Iterator[str]:
        """Platform-side log lines the runtime could not ship (start-up failures).
        The attempt's own output is in the store (``runs/<id>/logs/<n>.log``)."""
        return iter(())

    def where(self, handle: Handle) -> str:
        """A short place name for tables: host, zone, region."""
        return str(handle.get("where", ""))

    def check(self, run: RunRecord, store: ObjectStore) -> None:
        """Refuse, with a UserInputError that says what to fix, a run this backend could
        never start (called before anything is queued)."""
        return None

    def offers(self, run: RunRecord) -> list[Placement]:
        """The places a run may go, in order of preference (zones, regions). A failover
        moves the run to the next one (``run.offer_index``), wrapping around."""
        return [{}]

    def place_key(self, run: RunRecord, placement: Placement) -> str:
        """What a refusal in ``placement`` is about (e.g. region + machine + accelerator),
        so later runs avoid it for a while; "" where nothing is learned (local)."""
        return ""

    def refused_places(self, run: RunRecord, placement: Placement, reason: Reason) -> list[str]:
        """The places an attempt that ended with ``reason`` in ``placement`` tells later
        runs to avoid: its own place, or more (GCE: quota in a zone is the region's)."""
        return [self.place_key(run, placement)]


@runtime_checkable
class FindsAttempts(Protocol):
    """Backends that can find an attempt by run id and number without its handle —
    for an agent that died between starting an attempt and recording its handle."""

    def find(self, run: RunRecord, attempt: AttemptRecord) -> Handle | None: ...


@runtime_checkable
class SimulatesPreemption(Protocol):
    """Backends that can stage a real spot preemption: the notice, then the kill."""

    def send_preemption_notice(self, handle: Handle) -> None: ...

    def kill(self, handle: Handle) -> None: ...


_simulates: dict[type, bool] = {}


def simulates_preemption(backend: object) -> TypeGuard[SimulatesPreemption]:
    """``isinstance(backend, SimulatesPreemption)``, once per class: a runtime-checkable
    protocol's check costs tens of microseconds, and an agent asks it for every run on
    every tick."""
    cls = type(backend)
    known = _simulates.get(cls)
    if known is None:
        known = _simulates[cls] = isinstance(backend, SimulatesPreemption)
    return known
