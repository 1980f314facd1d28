"""The agent: a reconcile loop over the runs it holds leases on (DESIGN.md §1).

Each tick it renews its leases, reconciles every run it owns, claims queued runs up to
``max_jobs``, and adopts runs whose agent died (expired lease). It keeps nothing in
memory that the store does not also have, so it may be killed at any instant. On a
bucket, runs are read ahead, reconciled and claimed from a pool of threads
(``agent/workers.py``): what they share here — the agent's record and the leases it
holds — is guarded by one lock.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from relaunch.agent.adopt import Adopter
from relaunch.agent.claim import Claimer
from relaunch.agent.damaged import set_aside
from relaunch.agent.prefetch import ReadAhead
from relaunch.agent.reconcile import Reconciler, Watch
from relaunch.agent.start import LeaseLost
from relaunch.agent.workers import Workers
from relaunch.backends import registry
from relaunch.errors import DamagedRecord, PreconditionFailed, RelaunchError
from relaunch.runs import agents, keys, leases
from relaunch.runs.leases import Lease
from relaunch.runs.repo import RunRepo
from relaunch.store.base import ObjectStore


def new_agent_id() -> str:
    host = re.sub(r"[^a-z0-9-]", "-", socket.gethostname().lower())[:30].strip("-") or "host"
    # hosts and pids repeat across containers (pid 1): the random part keeps ids apart
    return f"{host}-{os.getpid()}-{os.urandom(4).hex()}"


def default_poll(store: ObjectStore) -> float:
    """Seconds between ticks: a local directory is cheap to read; on a bucket a tick costs
    a listing of ``live/`` (class A) and a read of each queue's bell, and every 4 s keeps
    each run's check within the 5 s detection target while ticks vary."""
    return 4.0 if store.url.startswith("gs://") else 0.25


#: How often an agent on a bucket scans ``live/`` for runs to adopt (agent/adopt.py).
ADOPT_EVERY_BUCKET = 20.0


@dataclass
class Owned:
    lease: Lease
    watch: Watch = field(default_factory=Watch)


#: A run whose reconcile keeps failing on a bug is looked at again this much later.
SICK_BACKOFF = 30.0


#: Cached records of owned runs are read again at least this often.
RECORD_REREAD = 30.0
#: How often an agent deletes the records of agents dead for over an hour.
PRUNE_EVERY = 600.0


@dataclass
class AgentOptions:
    queues: list[str] = field(default_factory=lambda: ["default"])
    max_jobs: int = 4
    poll: float | None = None
    lease_ttl: float = 30.0
    only_runs: set[str] | None = None  # serve just these runs (stop/follow helpers)


class Agent:
    def __init__(
        self,
        store: ObjectStore,
        options: AgentOptions | None = None,
        agent_id: str | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.opts = options or AgentOptions()
        for q in self.opts.queues:
            keys.valid_queue(q)
        self.poll = self.opts.poll if self.opts.poll is not None else default_poll(store)
        self.id = agent_id or new_agent_id()
        # Records of the runs this agent owns are re-read from the store at least this
        # often (and after any write of theirs that failed): see RunRepo. Under a lease
        # only its agent writes them (a resume only touches ended runs; stop and preempt
        # requests are objects of their own): the re-read finds damage, not news.
        self.repo = RunRepo(store, cache_ttl=RECORD_REREAD)
        self.reconciler = Reconciler(self.repo, self.id)
        self.workers = Workers(parallel=not _is_local(store))
        self.ahead = ReadAhead(self.repo, self.workers)
        self._claimer = Claimer(self, every_tick=_is_local(store))
        self.owned: dict[str, Owned] = {}
        self._unserved: set[str] = set()  # runs whose backend cannot run on this host
        self._sick: dict[str, tuple[float, str]] = {}  # run → (look again at, last error)
        self._ahead_error = ""  # the last failure of a read-ahead, logged once
        self.epoch = os.urandom(4).hex()  # new when found dead: see runs/agents.py
        self._record_gen = 0  # generation of this agent's record as last written
        self._confirmed_until = 0.0  # monotonic: no write needed to confirm before this
        self._next_renew = 0.0
        self._renewed_at = 0.0  # wall time of the last renewal
        self._next_adopt = 0.0
        self._next_prune = time.time() + PRUNE_EVERY
        self.log = log or (lambda msg: print(f"[agent {self.id}] {msg}", file=sys.stderr))
        self.stopping = threading.Event()
        self.tick_error = ""  # why the last tick failed ("" when it did not)
        self._busy_at = time.monotonic()  # when this agent last owned a run
        self._lock = threading.RLock()  # the agent's record: renewals, confirmations
        self._adopter = Adopter(self)

    # -- the loop -------------------------------------------------------------------

    def run(self, until: Callable[[], bool] | None = None) -> None:
        """Tick until ``stopping`` is set (or ``until()`` is true); then let go of leases.
        Nothing a store or a record does ends the loop: a failing tick is logged (once
        per distinct error) and tried again."""
        last_error = ""
        try:
            while not self.stopping.is_set() and not (until and until()):
                started = time.monotonic()
                try:
                    self.tick()
                    last_error = self.tick_error = ""
                except Exception as e:  # the store is unreachable or full, say: try again
                    error = str(e) if isinstance(e, RelaunchError) else traceback.format_exc()
                    if error != last_error:
                        self.log(f"tick failed (retrying): {error}")
                    last_error = error
                    self.tick_error = (e.message if isinstance(e, RelaunchError) else str(e)) or (
                        type(e).__name__
                    )
                    self.stopping.wait(min(5.0, self.opts.lease_ttl / 4))
                self.stopping.wait(max(0.0, self.poll - (time.monotonic() - started)))
        finally:
            self.workers.close()
            try:
                self.shutdown()
            except RelaunchError as e:
                self.log(f"could not release every lease ({e}); they expire by themselves")

    def idle_for(self) -> float:
        """Seconds since this agent last owned a run (0 while it owns one)."""
        return 0.0 if self.owned else time.monotonic() - self._busy_at

    def tick(self) -> None:
        now = time.time()
        if self.owned:
            self._busy_at = time.monotonic()
        self._renew_if_due()
        self.repo.begin_tick()
        try:
            self._read_ahead()
            self._reconcile_all(list(self.owned))
        finally:
            self.repo.end_tick()
        # Orphans first: their trainers may already be done and waiting to be concluded.
        if now >= self._next_adopt:
            self._adopt()
            self._next_adopt = now + self._adopt_every()
        self._claim()
        if now >= self._next_prune:  # records of agents long dead
            agents.prune(self.store, now)
            self._next_prune = now + PRUNE_EVERY

    def _read_ahead(self) -> None:
        """Reads for every run at once, before reconciling them. Only a saving: when it
        fails (a store error, or a record it stumbles on), each run is read on its own
        when reconciled, where its errors are handled, and every run is still looked at."""
        try:
            self.ahead.tick(self.owned, skip=self._resting())
        except Exception as e:
            error = str(e) if isinstance(e, RelaunchError) else traceback.format_exc()
            if error != self._ahead_error:
                self.log(f"reading ahead failed; each run is read on its own: {error}")
            self._ahead_error = error
        else:
            self._ahead_error = ""

    def _adopt_every(self) -> float:
        if not _is_local(self.store):
            return ADOPT_EVERY_BUCKET
        return max(self.poll * 4, min(self.opts.lease_ttl / 3, 5.0))

    def shutdown(self) -> None:
        """Release leases so another agent adopts the runs at once; their attempts keep
        running (they do not depend on this process)."""
        owned, self.owned = list(self.owned.values()), {}
        for each in owned:
            leases.release(self.store, each.lease)
        try:
            self.store.delete(keys.agent_key(self.id), if_generation_match=self._record_gen)
        except PreconditionFailed:
            pass  # marked dead by another agent: that record is its to prune

    # -- pieces -----------------------------------------------------------------------

    def _renew_if_due(self) -> None:
        """Called between pieces of work too: a long tick (many claims on a loaded
        machine) must not let leases expire under runs this agent is still managing."""
        with self._lock:
            now = time.time()
            if now >= self._next_renew:
                self._renew(now)

    def _renew(self, now: float) -> None:
        """Renew this agent's record — which holds every lease it has — by
        compare-and-swap. It fails only when another agent found this one dead (it froze
        or lost the store for longer than its lease) and took runs from it: then every
        run is let go, and the agent goes on in a new epoch."""
        with self._lock:
            self._renew_record(now)

    def _renew_record(self, now: float) -> None:
        ttl = self.opts.lease_ttl
        started = time.monotonic()
        body = {
            "id": self.id,
            "epoch": self.epoch,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": self.opts.queues,
            "runs": sorted(self.owned.copy()),  # a copy: other threads add and drop runs
            "expires_at": now + ttl,
            "max_jobs": self.opts.max_jobs,
        }
        try:
            self._record_gen = agents.write(self.store, self.id, body, self._record_gen)
        except PreconditionFailed:
            mine = agents.read(self.store, self.id)
            if mine is not None and not mine.dead and mine.epoch == self.epoch:
                # Only this agent writes its record in its epoch (others only mark it
                # dead): an earlier write landed and its answer was lost. Go on from it.
                self._record_gen = agents.write(self.store, self.id, body, mine.generation)
                self._renewed(now, started)
                return
            self._found_dead()
            body.update(epoch=self.epoch, runs=[])
            tombstone = agents.read(self.store, self.id)
            gen = tombstone.generation if tombstone is not None else 0
            self._record_gen = agents.write(self.store, self.id, body, gen)
        self._renewed(now, started)

    def _renewed(self, now: float, started: float) -> None:
        """Nobody may take a run from this agent before its record expires (now + ttl):
        actions up to half of that need no further write (see _confirm). The record is
        renewed every third of that while the agent holds runs; an idle agent, whose
        record fences nothing, renews it every two thirds (a run taken makes it
        renew at the usual pace again: ``_take``)."""
        ttl = self.opts.lease_ttl
        self._confirmed_until = started + ttl / 2
        self._renewed_at = now
        self._next_renew = now + (ttl / 3 if self.owned else ttl * 2 / 3)

    def _found_dead(self) -> None:
        lost = sorted(self.owned)
        self.log(
            "another agent found this one dead (frozen, or without the store, for longer "
            f"than its lease): letting go of {len(lost)} run(s); going on in a new epoch"
        )
        self.owned.clear()
        for run_id in lost:
            self.repo.forget(run_id)
        self.epoch = os.urandom(4).hex()
        self._record_gen = 0
        self._confirmed_until = 0.0

    def _confirm(self, run_id: str) -> None:
        """The last word before acting on a run's backend: that this agent still holds
        its lease. Within half a lease time of the agent's last renewal nobody can have
        taken it; later, the record is renewed now (by compare-and-swap). LeaseLost when
        another agent took the run (this one froze)."""
        with self._lock:
            if run_id in self.owned and time.monotonic() >= self._confirmed_until:
                self._renew(time.time())
        if run_id not in self.owned:
            raise LeaseLost(f"lost the lease of {run_id} to another agent; letting it go")

    def _reconcile_all(self, runs: list[str]) -> None:
        """Every owned run, one step each. On a bucket the runs of backends that allow
        calls from several threads are reconciled at once: a run that ends an attempt
        and starts the next makes some twenty requests in a row, and a thousand quiet
        runs must not wait for them. Others go one after another."""
        together = [r for r in runs if self.workers.parallel and self._thread_safe(r)]
        apart = set(together)
        for run_id in runs:
            if run_id not in apart:
                self._reconcile(run_id)
        self.workers.map(self._reconcile, together)

    def _thread_safe(self, run_id: str) -> bool:
        fields = self.repo.cached_fields(keys.run_key(run_id))
        if fields is None:
            return False
        try:
            return registry.get_backend(str(fields.get("backend"))).thread_safe
        except RelaunchError:
            return False

    def _reconcile(self, run_id: str) -> None:
        self._renew_if_due()
        owned = self.owned.get(run_id)
        if owned is None:  # its lease was lost during this tick
            return
        sick = self._sick.get(run_id)
        if sick is not None and time.monotonic() < sick[0]:
            return
        try:
            done = self.reconciler.reconcile(run_id, owned.watch, lambda: self._confirm(run_id))
        except LeaseLost as e:
            self.log(str(e))
            return
        except DamagedRecord as e:
            self._set_aside(run_id, e)
            return
        except Exception as e:  # a bug or an outage must not take every other run down
            self._sicken(run_id, e)
            return
        self._sick.pop(run_id, None)
        if done:
            leases.release(self.store, owned.lease)
            self.owned.pop(run_id, None)

    def _resting(self) -> list[str]:
        """Runs backed off after a bug: not looked at (nor read) this tick."""
        now = time.monotonic()
        return [run_id for run_id, (until, _) in self._sick.items() if until > now]

    def _sicken(self, run_id: str, e: Exception) -> None:
        """Log a failing run once per distinct error; a bug backs the run off for a while,
        a store or cloud error is simply tried again next tick."""
        error = str(e) if isinstance(e, RelaunchError) else traceback.format_exc()
        last = self._sick.get(run_id, (0.0, ""))[1]
        if error != last:
            self.log(f"{run_id}: {error if isinstance(e, RelaunchError) else 'internal error'}")
            if not isinstance(e, RelaunchError):
                self.log(error)
        delay = 0.0 if isinstance(e, RelaunchError) else SICK_BACKOFF
        self._sick[run_id] = (time.monotonic() + delay, error)

    def _set_aside(self, run_id: str, e: DamagedRecord) -> None:
        """A record of the run cannot be read: the run is set aside (damaged.py), and
        this agent lets it go."""
        try:
            set_aside(self.repo, run_id, e, self.id, self.log)
        except RelaunchError as again:
            self.log(f"{run_id}: could not set it aside yet: {again}")
            return
        owned = self.owned.pop(run_id, None)
        if owned is not None:
            leases.release(self.store, owned.lease)

    def _wanted(self, run_id: str) -> bool:
        return self.opts.only_runs is None or run_id in self.opts.only_runs

    def _take(self, run_id: str) -> bool:
        with self._lock:
            if self._record_gen == 0 or time.monotonic() >= self._confirmed_until:
                self._renew(time.time())  # a lease is only as good as the agent's record
            epoch = self.epoch
        lease = leases.acquire(self.store, run_id, self.id, self.opts.lease_ttl, epoch)
        if lease is None:
            return False
        with self._lock:
            if self.epoch != epoch:  # found dead meanwhile (another thread's renewal)
                leases.release(self.store, lease)
                return False
            self.repo.forget(run_id)  # whatever was cached before another agent owned it
            self.owned[run_id] = Owned(lease)
            self._next_renew = min(self._next_renew, self._renewed_at + self.opts.lease_ttl / 3)
        return True

    def _claim(self) -> None:
        """Claim queued runs up to ``max_jobs`` (agent/claim.py)."""
        self._claimer()

    def _can_serve(self, run_id: str, backend: str | None) -> bool:
        """Whether this agent can manage the run's backend: a host without the libraries
        a backend needs leaves its runs for an agent that has them, and says so once."""
        error = registry.missing(backend) if backend is not None else None
        if error is not None and run_id not in self._unserved:
            self._unserved.add(run_id)
            self.log(f"{run_id}: left for another agent: backend {backend}: {error}")
        return error is None

    def _adopt(self) -> None:
        """Take over runs whose agent died or stopped: an expired lease, none on a started
        run, or none on a queued run whose queue item is gone (claimed, then let go).
        Candidates come from the live index (agent/adopt.py)."""
        self._adopter()


def live_agents(store: ObjectStore, queue_name: str | None = None) -> list[dict[str, object]]:
    """Agents whose liveness record has not expired (optionally serving ``queue_name``)."""
    return [record.body for record in agents.live(store, queue_name)]


def _is_local(store: ObjectStore) -> bool:
    """A store whose reads cost microseconds (a local folder): read one after another."""
    return not store.url.startswith("gs://")
