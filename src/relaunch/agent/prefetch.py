"""Reading ahead for a tick: the store reads and backend polls an agent's tick needs
for every run it owns, made before the runs are reconciled — at once, from the agent's
pool of threads on a bucket, one after another on a local folder (``agent/workers.py``).

What is read ahead is only what reconciling would read anyway: run and attempt
records whose cached copy is due a re-read (``RunRepo`` cache), each run's heartbeat,
its stop marker, and its ``relaunch preempt`` request; and the backend polls that are
due, for backends whose clients may be called from several threads
(``Backend.thread_safe``). Reconciling then finds them in the repo (``read_ahead``)
and in each run's ``Watch``; anything written meanwhile is read again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from relaunch.agent.reconcile import POLL_SLACK
from relaunch.agent.workers import Workers
from relaunch.backends.base import AttemptStatus, simulates_preemption
from relaunch.backends.registry import get_backend
from relaunch.errors import ObjectNotFound, RelaunchError
from relaunch.runs import keys, live
from relaunch.runs.repo import RunRepo
from relaunch.states import AttemptState

if TYPE_CHECKING:
    from relaunch.agent.loop import Owned

#: A run's stop marker is read at least this often even when no stop signal is listed.
STOP_RECHECK = 60.0
#: A run without a heartbeat under ``live/`` has the key of older runtimes read this
#: often (every tick once one was found there: its runtime is an older relaunch's).
LEGACY_RECHECK = 30.0


class ReadAhead:
    def __init__(self, repo: RunRepo, workers: Workers) -> None:
        self.repo = repo
        self.workers = workers
        self.parallel = workers.parallel
        # With a listing (on a bucket): heartbeats as last read, and when each run's
        # stop marker is next read even without a signal.
        self._heartbeats: dict[str, tuple[bytes, int] | None] = {}
        self._stops_checked: dict[str, float] = {}
        self._legacy: set[str] = set()  # runs whose heartbeat is at the legacy key
        self._legacy_checked: dict[str, float] = {}

    def _map(self, jobs: list[Callable[[], Any]]) -> list[Any]:
        return self.workers.map(lambda job: job(), jobs)

    def tick(self, owned: dict[str, Owned], skip: Iterable[str] = ()) -> None:
        """Read ahead for every run in ``owned`` except ``skip``."""
        skipped = set(skip)
        runs = [r for r in owned if r not in skipped]
        if not runs:
            return  # an idle agent lists nothing
        store = self.repo.store
        # 1. Run records due a re-read (the attempt's number comes from them).
        stale = [keys.run_key(r) for r in runs if not self.repo.fresh(keys.run_key(r))]
        self._remember(stale)
        # 2. Attempt records due a re-read, heartbeats, stop markers, preempt requests.
        records: list[str] = []
        objects: list[str] = []
        stops: list[str] = []
        legacy: dict[str, str] = {}  # key of an older runtime's heartbeat → its run
        for run_id in runs:
            run = self.repo.cached_fields(keys.run_key(run_id))
            if run is None:
                continue
            n = run.get("attempt")
            if isinstance(n, int) and n and not self.repo.fresh(keys.attempt_key(run_id, n)):
                records.append(keys.attempt_key(run_id, n))
            objects.append(keys.heartbeat_key(run_id))
            if self.parallel:  # on a local folder, read only when there is no other
                objects.append(keys.legacy_heartbeat_key(run_id))
                legacy[keys.legacy_heartbeat_key(run_id)] = run_id
            stops.append(keys.stop_key(run_id))
            if _simulates_preemption(str(run.get("backend"))):
                objects.append(keys.preempt_key(run_id))
        known: dict[str, tuple[bytes, int] | None] = {}
        if self.parallel:
            known = self._listed(runs, objects, stops)
            objects = [k for k in objects if k not in known]
            stops = [k for k in stops if k not in known]
        jobs: list[Callable[[], Any]] = [partial(_get, store, k) for k in records + objects]
        jobs += [partial(_stat, store, k) for k in stops]
        found = self._map(jobs)
        for key, value in zip(records, found[: len(records)], strict=True):
            if isinstance(value, tuple):  # not a failed read: reconciling reads it again
                self.repo.remember(key, *value)
        ahead = dict(zip(objects + stops, found[len(records) :], strict=True))
        for key, value in ahead.items():
            if key in self._heartbeats and not isinstance(value, Exception):
                self._heartbeats[key] = value
            legacy_of = legacy.get(key)
            if legacy_of is not None and isinstance(value, tuple):
                self._legacy.add(legacy_of)
            elif legacy_of is not None and value is None:
                self._legacy.discard(legacy_of)
        ahead.update(known)
        self.repo.read_ahead({k: v for k, v in ahead.items() if not isinstance(v, Exception)})
        # 3. Backend polls that are due, where the backend allows concurrent calls.
        self._poll(owned, runs)

    def _listed(
        self, runs: list[str], objects: list[str], stops: list[str]
    ) -> dict[str, tuple[bytes, int] | None]:
        """What one listing of ``live/`` tells without reading: a heartbeat that did not
        change since it was last read (its bytes are kept here), none at all, no stop
        signal. Only what the listing cannot tell is read: a changed heartbeat, a stop
        marker behind a signal, and every run's stop marker once in ``STOP_RECHECK``
        (a stop whose signal was lost). A run with no heartbeat listed has the key of
        older runtimes read once in ``LEGACY_RECHECK``, and every tick once one was
        found there."""
        view = live.scan(self.repo.store)
        now = time.monotonic()
        known: dict[str, tuple[bytes, int] | None] = {}
        wanted = set(objects) | set(stops)
        self._heartbeats = {k: v for k, v in self._heartbeats.items() if k in wanted}
        for run_id in runs:
            listed = view.get(run_id)
            if listed is None or listed.entry is None:
                continue  # not indexed (a store of an older relaunch): read as before
            hb_key = keys.heartbeat_key(run_id)
            last = self._heartbeats.get(hb_key)
            if listed.heartbeat is None:
                known[hb_key] = None
            elif last is not None and last[1] == listed.heartbeat.generation:
                known[hb_key] = last
            else:
                self._heartbeats[hb_key] = None  # read below, and kept
            legacy = keys.legacy_heartbeat_key(run_id)
            if listed.heartbeat is not None:
                known[legacy] = None  # a current runtime: the legacy key is not looked at
            elif run_id not in self._legacy:
                if now < self._legacy_checked.get(run_id, 0.0):
                    known[legacy] = None
                else:
                    self._legacy_checked[run_id] = now + LEGACY_RECHECK
            stop_key = keys.stop_key(run_id)
            if listed.stop is None and now < self._stops_checked.get(run_id, 0.0):
                known[stop_key] = None
            elif listed.stop is None:
                self._stops_checked[run_id] = now + STOP_RECHECK
        self._stops_checked = {r: t for r, t in self._stops_checked.items() if r in view}
        self._legacy_checked = {r: t for r, t in self._legacy_checked.items() if r in view}
        self._legacy &= set(view)
        return known

    def _remember(self, record_keys: list[str]) -> None:
        found = self._map([partial(_get, self.repo.store, k) for k in record_keys])
        for key, value in zip(record_keys, found, strict=True):
            if isinstance(value, tuple):
                self.repo.remember(key, *value)

    def _poll(self, owned: dict[str, Owned], runs: list[str]) -> None:
        now = time.time()
        due: list[tuple[Owned, Any, Any]] = []
        for run_id in runs:
            run = self.repo.cached_fields(keys.run_key(run_id))
            n = run.get("attempt") if run is not None else None
            if run is None or not isinstance(n, int) or not n:
                continue
            try:
                backend = get_backend(str(run.get("backend")))
            except RelaunchError:
                continue
            if not backend.thread_safe:
                continue
            attempt = self.repo.cached_fields(keys.attempt_key(run_id, n))
            handle = attempt.get("handle") if attempt is not None else None
            if attempt is None or not handle or attempt.get("state") == AttemptState.ENDED.value:
                continue
            watch = owned[run_id].watch
            slack = min(POLL_SLACK, backend.poll_interval / 4)
            if now >= watch.next_poll - slack:
                due.append((owned[run_id], backend, handle))

        def poll(backend: Any, handle: Any) -> AttemptStatus | None:
            try:
                status: AttemptStatus = backend.poll(handle)
                return status
            except Exception:  # a cloud error or a damaged handle: asked again when
                return None  # reconciling, where each run's errors are handled

        results = self._map([partial(poll, b, h) for _, b, h in due])
        for (each, backend, _), status in zip(due, results, strict=True):
            if status is not None:
                each.watch.last_status = status
                each.watch.next_poll = now + backend.poll_interval


def _get(store: Any, key: str) -> tuple[bytes, int] | Exception | None:
    try:
        data, gen = store.get(key)
        return data, gen
    except ObjectNotFound:
        return None
    except RelaunchError as e:  # read again when reconciling, where errors are handled
        return e


def _stat(store: Any, key: str) -> tuple[bytes, int] | Exception | None:
    try:
        meta = store.stat(key)
    except RelaunchError as e:
        return e
    return None if meta is None else (b"", meta.generation)


def _simulates_preemption(backend: str) -> bool:
    try:
        return simulates_preemption(get_backend(backend))
    except RelaunchError:
        return False
