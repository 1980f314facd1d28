"""Adoption: taking over runs whose agent died or stopped, found from the live index
(``runs/live.py``) so the scan does not grow with the store's history.

One listing of ``live/`` names every run not over. A run listed by a live agent's record
(``agents/<id>.json`` carries the runs it owns) is passed over without reading its lease;
any other one has its record read and, unless it is over or waits in its queue, its
lease: the lease stays the truth, and taking it is the usual compare-and-swap. The scan
also finishes what a crash left behind: an entry of a run that is over (its agent died
between the ended mark and the cleanup), an entry without a record (its enqueuer died),
``ended/`` entries older than a day. A run whose store calls fail is logged and left for
the next scan; the scan goes on with the others.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from relaunch.errors import DamagedRecord, ObjectNotFound, PreconditionFailed
from relaunch.runs import agents, keys, leases, live, queue
from relaunch.runs.summary import SET_ASIDE
from relaunch.states import RunState
from relaunch.store.base import ObjectStore

if TYPE_CHECKING:
    from relaunch.agent.loop import Agent

#: ``ended/`` entries older than a day are deleted at most this often.
PRUNE_EVERY = 600.0
#: A resumed run with neither queue item nor lease is adopted only this long after its
#: resume (which may be on its way to its item) — at once when a stop was requested.
RESUME_GRACE = 20.0


def runs_of_live_agents(store: ObjectStore, me: str) -> set[str]:
    """The runs that other agents, alive by their own record, say they own (a hint: the
    lease of any other run is read, and stays the truth)."""
    return {run for record in agents.live(store) if record.agent_id != me for run in record.runs}


class Adopter:
    """The adoption scan of one agent (``Agent._adopt`` calls it)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.store = agent.store
        self.indexed = False
        # run → generation of its entry when its record was seen over: not read again
        # until the entry changes (a resume rewrites it) or the leftover is cleaned.
        self.over: dict[str, int] = {}
        self.next_prune = 0.0
        self.queued: set[str] | None = None  # run ids with a queue item, once per scan

    def __call__(self) -> None:
        agent, store = self.agent, self.store
        self.queued = None
        if agent.opts.only_runs is not None:
            # A helper serving a few runs (`relaunch stop`, waiting on a run) looks at
            # them directly: on any store, indexed or not, building nothing.
            for run_id in sorted(agent.opts.only_runs - set(agent.owned)):
                if len(agent.owned) < agent.opts.max_jobs:
                    signal = store.stat(keys.stop_signal_key(run_id))
                    self._look_at(live.LiveRun(run_id, stop=signal))
            return
        if not self.indexed:
            if not live.index_ready(store):
                n = live.build_index(store, agent.id)
                if n:  # a store written by an older relaunch
                    agent.log(f"indexed the store's live runs: {n} run(s) not over")
            self.indexed = True
        if time.monotonic() >= self.next_prune:
            live.prune_ended(store)
            self.next_prune = time.monotonic() + PRUNE_EVERY
        found = live.scan(store)
        self.over = {r: g for r, g in self.over.items() if r in found}
        others: set[str] | None = None
        for run_id, listed in sorted(found.items()):
            if len(agent.owned) >= agent.opts.max_jobs:
                return
            if run_id in agent.owned or not agent._wanted(run_id):
                continue
            try:
                if listed.entry is None:
                    self._leftover(listed)
                    continue
                if self.over.get(run_id) == listed.entry.generation:
                    if live.settled(listed.entry):
                        self._clean(listed, None)
                    continue
                if others is None:
                    others = runs_of_live_agents(store, agent.id)
                if run_id not in others:
                    self._look_at(listed)
            except Exception as e:  # one run's failing call (or record) must not stop the scan
                agent._sicken(run_id, e)

    def _look_at(self, listed: live.LiveRun) -> None:
        agent, run_id, entry = self.agent, listed.run_id, listed.entry
        now = time.time()
        try:
            found = agent.repo.find_run(run_id)
        except DamagedRecord as e:
            settled = agent.repo.unsettled_damage(run_id) is None
            if settled and agent.repo.damaged(run_id) is not None:
                if entry is not None:  # set aside; only leaving live/ was cut short
                    self.over[run_id] = entry.generation
                return
            # not set aside yet, or its cleanup was cut short: whoever takes it does it
            lease = leases.read_lease(self.store, run_id)
            if self._free(lease, now) and agent._take(run_id):
                agent._set_aside(run_id, e)
            return
        if found is None:
            # Its enqueuer died before the record (a queue item, if any, gets claimed).
            if entry is not None and live.settled(entry) and run_id not in self._queued():
                self._drop(entry.key, entry.generation)
            return
        run = found[0]
        if run.state.terminal and (run.detail or "").startswith(SET_ASIDE):
            mark = agent.repo.unsettled_damage(run_id)
            if mark is not None:  # set aside, and its cleanup was cut short
                lease = leases.read_lease(self.store, run_id)
                if self._free(lease, now) and agent._take(run_id):
                    why = str(mark[0].get("why", "damaged"))
                    agent._set_aside(run_id, DamagedRecord(keys.damaged_key(run_id), why))
                return
        if run.state.terminal and run.ended_event:
            if entry is not None:  # its agent died between the ended mark and the cleanup
                self.over[run_id] = entry.generation
                if live.settled(entry):
                    self._clean(listed, run.ended_at)
            return
        if run.queue not in agent.opts.queues or not agent._can_serve(run_id, run.backend):
            return
        lease = leases.read_lease(self.store, run_id)
        if lease is None and run.state is RunState.QUEUED:
            if run_id in self._queued():
                return  # waiting in its queue: claimed the usual way
            resuming = run.resumed_at is not None and now - run.resumed_at < RESUME_GRACE
            if resuming and listed.stop is None:
                return  # a resume between its record and its queue item: give it time
        if self._free(lease, now) and agent._take(run_id):
            agent.repo.add_event(
                run_id,
                "adopted",
                f"adopted by agent {agent.id} "
                f"(previous agent: {lease.agent_id if lease else 'none'})",
            )
            agent.log(f"adopted {run_id}")

    def _free(self, lease: leases.Lease | None, now: float) -> bool:
        """Whether this agent may take the lease of a run it does not own: nobody holds
        it, or it names this agent itself — a take whose write landed and whose answer
        was lost. Held by a live agent (this one), nobody else would ever take it."""
        if lease is not None and lease.agent_id == self.agent.id:
            return True
        return not leases.is_held(self.store, lease, now)

    def _queued(self) -> set[str]:
        if self.queued is None:
            self.queued = {
                keys.run_id_of_queue_item(k)
                for q in self.agent.opts.queues
                for k in queue.items(self.store, q)
            }
        return self.queued

    def _clean(self, listed: live.LiveRun, ended_at: float | None) -> None:
        """Take a run that is over out of ``live/``, by the generation listed."""
        assert listed.entry is not None
        if ended_at is None:
            try:
                found = self.agent.repo.find_run(listed.run_id)
            except DamagedRecord:
                found = None
            ended_at = found[0].ended_at if found else None
        live.ended(
            self.store,
            listed.run_id,
            ended_at=ended_at or time.time(),
            entry_generation=listed.entry.generation,
        )
        self.over.pop(listed.run_id, None)

    def _leftover(self, listed: live.LiveRun) -> None:
        """A heartbeat or stop signal with no entry: what a crash (or a stop of an ended
        run) left. Cleaned once settled, if the run is over or has no record."""
        if not (live.settled(listed.heartbeat) or live.settled(listed.stop)):
            return
        run_id = listed.run_id
        try:
            record = json.loads(self.store.get(keys.run_key(run_id))[0])
            readable = isinstance(record, dict)
            over = readable and live.over(record)
        except ObjectNotFound:
            readable, over = True, True  # no record at all
        except (ValueError, RecursionError):  # not JSON, or nested past the parser
            readable, over = False, False
        if not readable:  # damaged: out of live/ once it has been set aside
            over = self.store.stat(keys.damaged_key(run_id)) is not None
        if over:
            live.drop_leftover(self.store, listed)

    def _drop(self, key: str, generation: int) -> None:
        try:
            self.store.delete(key, if_generation_match=generation)
        except PreconditionFailed:
            pass  # written meanwhile: somebody is using it
