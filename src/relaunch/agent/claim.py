"""Claiming queued runs: an agent takes a run's lease, makes sure its record exists, drops
its queue item and starts reconciling it. One bad item never stops the queue behind it.
On a bucket the queue is listed only when its bell rang (``Bells``).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from relaunch.errors import DamagedRecord, ObjectNotFound, PreconditionFailed
from relaunch.runs import keys, leases, live, queue
from relaunch.runs.records import RunRecord
from relaunch.states import RunState

if TYPE_CHECKING:
    from relaunch.agent.loop import Agent

#: Seconds of claiming per tick, after which the rest of a queue waits for the next one.
CLAIM_BUDGET = 2.0


class Claimer:
    """The claims of one agent (``Agent._claim`` calls it)."""

    def __init__(self, agent: Agent, *, every_tick: bool) -> None:
        self.agent = agent
        self.store = agent.store
        self.bells = Bells(agent.store, every_tick=every_tick)

    def __call__(self) -> None:
        """Claim what the queues hold, up to ``max_jobs``: on a bucket a batch at a time
        from the agent's threads, and for ``CLAIM_BUDGET`` seconds at most — a thousand
        runs queued at once are claimed over a few ticks, and the runs this agent
        already owns are looked at between them."""
        agent = self.agent
        started = time.monotonic()
        for q in agent.opts.queues:
            if not self.bells.due(q):
                continue
            room = agent.opts.max_jobs - len(agent.owned)
            wanted: list[tuple[str, str]] = []
            for key in queue.items(self.store, q):
                run_id = keys.run_id_of_queue_item(key)
                if run_id in agent.owned or run_id in agent._unserved or not agent._wanted(run_id):
                    continue
                self.bells.backlog(q)  # listed again next tick (claimed items are gone)
                if len(wanted) >= room:
                    break
                wanted.append((key, run_id))
            size = agent.workers.size if agent.workers.parallel else 1
            for at in range(0, len(wanted), size):
                if time.monotonic() - started >= CLAIM_BUDGET:
                    return  # the rest next tick: the queue is listed again (backlog)
                claimed = agent.workers.map(self._try, wanted[at : at + size])
                # Started at once, where their backend allows (Agent._reconcile_all).
                agent._reconcile_all([run_id for run_id in claimed if run_id is not None])

    def _try(self, item: tuple[str, str]) -> str | None:
        """Claim one queue item: its run id once this agent holds the run, else None.
        One bad item must not stop the queue behind it."""
        key, run_id = item
        agent = self.agent
        try:
            return run_id if self._claim(key, run_id) else None
        except DamagedRecord as e:
            agent._set_aside(run_id, e)
        except Exception as e:
            agent._sicken(run_id, e)
            owned = agent.owned.pop(run_id, None)
            if owned is not None:
                leases.release(self.store, owned.lease)
        return None

    def _claim(self, key: str, run_id: str) -> bool:
        agent = self.agent
        try:
            data, _ = self.store.get(key)
        except ObjectNotFound:
            return False  # another agent claimed it and already removed the item
        if not agent._can_serve(run_id, _backend_of(data)):
            return False
        if not agent._take(run_id):
            return False
        if not self._settle(key, data, run_id):
            leases.release(self.store, agent.owned.pop(run_id).lease)
            return False
        agent.repo.add_event(run_id, "claimed", f"claimed by agent {agent.id}")
        return True

    def _settle(self, key: str, data: bytes, run_id: str) -> bool:
        """We hold the lease: make sure the run record exists, then drop the queue item.
        False when there is nothing to run (the item is gone, damaged, or a leftover of a
        submission refused because its run id was taken)."""
        repo = self.agent.repo
        if self.store.stat(key) is None:
            return False  # another agent claimed it between our read and our lease
        try:
            item = RunRecord.model_validate_json(data)
        except ValidationError as e:
            self._damaged_item(key, run_id, e)
            return False
        found = repo.find_run(run_id)
        if found is None:  # the enqueuer has not written the record yet, or died
            try:
                repo.create_run(item)
            except PreconditionFailed:
                found = repo.find_run(run_id)
        if found is not None and item.nonce and found[0].nonce and found[0].nonce != item.nonce:
            self.store.delete(key)  # another run has this id: its enqueuer says so
            return False
        self.store.delete(key)
        run = repo.get_run(run_id, cached=True)  # ours now: reconciling reads it from here
        if not run.state.terminal and live.entry(self.store, run_id) is None:
            # Queued by a relaunch older than the live index: index it now.
            live.add(self.store, run_id, queue=run.queue, backend=run.backend,
                     created_at=run.created_at)  # fmt: skip
        return not run.state.terminal

    def _damaged_item(self, key: str, run_id: str, e: ValidationError) -> None:
        """A queue item that cannot be read. The run record holds the same: when it is
        readable and still QUEUED, the item is written again from it (and claimed the
        usual way next tick, by whichever agent serves its backend); when the run went
        on, the item is a leftover. With no readable record the run is set aside."""
        repo = self.agent.repo
        try:
            found = repo.find_run(run_id)
        except DamagedRecord:
            found = None
        if found is not None and found[0].state is RunState.QUEUED:
            self.agent.log(f"{run_id}: its queue item {key} is damaged; rewritten from its record")
            self.store.put(key, found[0].model_dump_json().encode())
            return
        if found is None:
            why = f"its queue item is damaged ({key}): {e.errors()[0].get('msg', 'invalid')}"
            repo.mark_damaged(run_id, why, self.agent.id)
        self.store.delete(key)


def _backend_of(data: bytes) -> str | None:
    """The backend of a queued run, from its queue item (None when it is damaged: the
    claim then goes on as usual and sorts it out)."""
    try:
        backend = json.loads(data).get("backend")
    except (ValueError, AttributeError, RecursionError):
        return None
    return backend if isinstance(backend, str) else None


class Bells:
    """When an agent lists a queue. On a local folder: every tick. On a bucket, where a
    listing costs a class A operation and a read a twelfth of that, the queue's bell
    (``keys.queue_bell_key``, rewritten by every enqueue after its item) is read each
    tick and the queue listed only when the bell changed, when the last listing left
    items behind, and at least every ``RELIST`` seconds (an enqueuer that died between
    its item and the bell)."""

    RELIST = 60.0

    def __init__(self, store: Any, *, every_tick: bool) -> None:
        self.store = store
        self.every_tick = every_tick
        self._rung: dict[str, int] = {}  # queue → the bell's generation at its last listing
        self._listed: dict[str, float] = {}  # queue → when it was last listed (monotonic)
        self._backlog: set[str] = set()

    def due(self, queue: str) -> bool:
        """Whether to list ``queue`` now (read the bell *before* listing: an item added
        after this read rings again)."""
        if self.every_tick:
            return True
        meta = self.store.stat(keys.queue_bell_key(queue))
        rung = meta.generation if meta is not None else 0
        now = time.monotonic()
        stale = now - self._listed.get(queue, -self.RELIST) >= self.RELIST
        if rung == self._rung.get(queue) and queue not in self._backlog and not stale:
            return False
        self._rung[queue], self._listed[queue] = rung, now
        self._backlog.discard(queue)
        return True

    def backlog(self, queue: str) -> None:
        """The listing left items that may be claimed later: list again next tick."""
        self._backlog.add(queue)
