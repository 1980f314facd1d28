"""Reading and writing runs in a store: records (by compare-and-swap), attempts,
heartbeats, results, events, stop markers."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from relaunch import eventlog
from relaunch.errors import (
    DamagedRecord,
    NotFoundError,
    ObjectNotFound,
    PreconditionFailed,
    StoreError,
)
from relaunch.runs import keys, live
from relaunch.runs.records import (
    AttemptRecord,
    AttemptResult,
    Event,
    Heartbeat,
    RunRecord,
    a_time,
    damaged_event,
)
from relaunch.store.base import ObjectStore, dump_json

M = TypeVar("M", bound=BaseModel)

# Set in the test suite: every hand-out of a cached record first checks that nobody
# changed the shared model in place (what a caller changes must be its own copy).
_CHECK_CACHE = bool(os.environ.get("RELAUNCH_CHECK_CACHE"))


class _Entry:
    """One cached record: its bytes and generation, when it was read, and — made on
    first use — its parsed JSON and its validated model. The parsed JSON is handed
    out as is (callers only read it); the model as a copy whose top-level lists and
    dicts are the caller's own, so a tick of an agent over 1,000 runs does not parse
    and validate every record again (about a third of that tick's CPU)."""

    __slots__ = ("_fields", "_model", "_snapshot", "at", "data", "gen")

    def __init__(self, data: bytes, gen: int, at: float) -> None:
        self.data, self.gen, self.at = data, gen, at
        self._fields: dict[str, Any] | None = None
        self._model: BaseModel | None = None
        self._snapshot = ""

    def fields(self) -> dict[str, Any] | None:
        if self._fields is None:
            try:
                value = json.loads(self.data)
            except (ValueError, RecursionError):  # not JSON, or nested past the parser
                return None
            if not isinstance(value, dict):
                return None
            self._fields = value
        return self._fields

    def handout(self, model: type[M], key: str) -> M:
        held = self._model
        if held is None or type(held) is not model:
            held = _validate(model, self.data, key)
            if _CHECK_CACHE:  # before the model is seen by other threads
                self._snapshot = held.model_dump_json()
            self._model = held
        elif _CHECK_CACHE and held.model_dump_json() != self._snapshot:
            raise AssertionError(f"a cached record was changed in place: {key}")
        copy = held.model_copy()
        for name, value in copy.__dict__.items():
            if isinstance(value, list):
                copy.__dict__[name] = list(value)
            elif isinstance(value, dict):
                copy.__dict__[name] = dict(value)
        return copy


def _validate(model: type[M], data: bytes, key: str) -> M:
    try:
        return model.model_validate_json(data)
    except ValidationError as e:
        raise DamagedRecord(key, _first_error(e, data)) from None


class RunRepo:
    """Typed access to ``runs/…`` in one store.

    With ``cache_ttl`` (an agent's repo), the run and attempt records of runs the caller
    owns can be read from what this repo itself last read or wrote (``cached=True``):
    while an agent holds a run's lease nobody else writes them, and every write is a
    compare-and-swap that fails — and drops the entry — if somebody did. It saves a
    storage read per record per tick. ``forget`` drops a run's entries (on taking a
    lease: what was cached before another agent owned it is stale)."""

    def __init__(self, store: ObjectStore, *, cache_ttl: float = 0.0) -> None:
        self.store = store
        self.cache_ttl = cache_ttl
        self._cache: dict[str, _Entry] = {}
        # Objects read ahead for one agent tick (None: known absent): see agent/prefetch.py.
        self._ahead: dict[str, tuple[bytes, int] | None] = {}
        self._tick_at: float | None = None

    def read_ahead(self, found: dict[str, tuple[bytes, int] | None]) -> None:
        """Objects (or their absence) read for this tick, served instead of the store
        until ``end_tick``; a write of this repo's to one of them drops it."""
        self._ahead.update(found)

    def remember(self, key: str, data: bytes, gen: int) -> None:
        """Keep a record read for the caller's cache (``cached=True`` reads)."""
        self._cache[key] = _Entry(data, gen, self._read_at())

    def fresh(self, key: str) -> bool:
        """Whether ``key`` is cached and young enough for a ``cached=True`` read."""
        hit = self._cache.get(key)
        return hit is not None and self._clock() - hit.at < self.cache_ttl

    def begin_tick(self) -> None:
        """From now until ``end_tick``, cached records are judged fresh or not by the
        tick's start: a record read ahead as fresh is not read again, one by one, just
        because it came of age while the tick went through the other runs."""
        self._tick_at = time.monotonic()

    def end_tick(self) -> None:
        self._ahead.clear()
        self._tick_at = None

    def _clock(self) -> float:
        return self._tick_at if self._tick_at is not None else time.monotonic()

    def _read_at(self) -> float:
        """When a record is taken as read: now, a little earlier at random, so the
        records of runs claimed together do not all come due in one tick."""
        return time.monotonic() - random.uniform(0.0, self.cache_ttl / 4)

    def cached_fields(self, key: str) -> dict[str, Any] | None:
        """The cached record at ``key`` as plain JSON (no validation: a hint of what to
        read ahead, never a basis for a decision), or None."""
        hit = self._cache.get(key)
        return None if hit is None else hit.fields()

    def peek(self, key: str) -> bytes | None:
        """The bytes at ``key`` (read ahead for this tick, or from the store), or None."""
        if key in self._ahead:
            ahead = self._ahead[key]
            return None if ahead is None else ahead[0]
        try:
            return self.store.get(key)[0]
        except ObjectNotFound:
            return None

    # -- generic ------------------------------------------------------------------

    def _get(self, key: str, model: type[M], cached: bool = False) -> tuple[M, int] | None:
        """The object at ``key`` as ``model``; DamagedRecord when it cannot be read as one."""
        hit = self._cache.get(key) if cached else None
        if hit is not None and self._clock() - hit.at < self.cache_ttl:
            return hit.handout(model, key), hit.gen
        if key in self._ahead:
            ahead = self._ahead[key]
            if ahead is None:
                return None
            data, gen = ahead
        else:
            try:
                data, gen = self.store.get(key)
            except ObjectNotFound:
                self._cache.pop(key, None)
                return None
            if self.cache_ttl and cached:
                entry = _Entry(data, gen, self._read_at())
                self._cache[key] = entry
                return entry.handout(model, key), gen
        return _validate(model, data, key), gen

    def _put(self, key: str, value: BaseModel, if_generation_match: int | None = None) -> int:
        data = value.model_dump_json(exclude_none=True).encode()
        self._ahead.pop(key, None)
        try:
            gen = self.store.put(key, data, if_generation_match=if_generation_match)
        except Exception:
            self._cache.pop(key, None)  # unknown now: read it again
            raise
        if key in self._cache:
            self._cache[key] = _Entry(data, gen, self._read_at())
        return gen

    def forget(self, run_id: str) -> None:
        prefix = keys.run_prefix(run_id)
        for key in list(self._cache):  # a copy: an agent's threads fill the cache meanwhile
            if key.startswith(prefix):
                self._cache.pop(key, None)

    # -- run records --------------------------------------------------------------

    def create_run(self, record: RunRecord) -> int:
        return self._put(keys.run_key(record.run_id), record, if_generation_match=0)

    def put_run(self, record: RunRecord, if_generation_match: int) -> int:
        """Replace the run record by compare-and-swap over ``if_generation_match``."""
        return self._put(keys.run_key(record.run_id), record, if_generation_match)

    def find_run(self, run_id: str, *, cached: bool = False) -> tuple[RunRecord, int] | None:
        found = self._get(keys.run_key(run_id), RunRecord, cached)
        if found is not None and found[0].run_id != run_id:
            raise DamagedRecord(keys.run_key(run_id), f"it names another run, {found[0].run_id!r}")
        return found

    def get_run(self, run_id: str, *, cached: bool = False) -> RunRecord:
        found = self.find_run(run_id, cached=cached)
        if found is None:
            raise NotFoundError(
                f"no run {run_id!r} in {self.store.url}", hint="`relaunch ps --all` lists the runs"
            )
        return found[0]

    def update_run(
        self, run_id: str, mutate: Callable[[RunRecord], bool | None], *, attempts: int = 20
    ) -> RunRecord:
        """Apply ``mutate`` by compare-and-swap, re-reading on conflict. ``mutate`` returns
        False to leave the record unchanged."""
        for _ in range(attempts):
            found = self.find_run(run_id)
            if found is None:
                raise NotFoundError(f"no run {run_id!r} in {self.store.url}")
            record, gen = found
            if mutate(record) is False:
                return record
            record.updated_at = time.time()
            try:
                self._put(keys.run_key(run_id), record, if_generation_match=gen)
                return record
            except PreconditionFailed:
                continue
        raise PreconditionFailed(f"run {run_id!r} kept changing; gave up updating it")

    def run_ids(self) -> list[str]:
        """Every run folder whose name is a valid run id (anything else is not ours)."""
        listing = self.store.list("runs/", delimiter="/")
        ids = (p[len("runs/") : -1] for p in listing.prefixes)
        return [i for i in ids if keys.RUN_ID_RE.match(i)]

    def runs(self) -> Iterator[RunRecord]:
        """Every readable run record. A damaged one (unreadable, or naming another run)
        is passed over, so one bad object cannot hide every other run."""
        for run_id in self.run_ids():
            try:
                found = self.find_run(run_id)
            except DamagedRecord:
                continue
            if found is not None:
                yield found[0]

    def damaged(self, run_id: str) -> str | None:
        """Why the run was set aside as damaged, or None."""
        try:
            data, _ = self.store.get(keys.damaged_key(run_id))
        except ObjectNotFound:
            return None
        try:
            return str(json.loads(data)["why"])
        except (ValueError, KeyError, TypeError):
            return "damaged"

    def mark_damaged(self, run_id: str, why: str, by: str, *, settled: bool = True) -> bool:
        """Set the run aside (once, whoever comes first): True for the one that did, which
        records the event. A run with nothing left to end is ``settled`` at once and
        leaves ``live/``; otherwise the mark says its cleanup is still to be done, and
        whoever holds its lease does it (``agent/damaged.py``), then ``settle_damage``."""
        body = {"why": why, "by": by, "time": time.time(), "settled": settled}
        try:
            self.store.put(keys.damaged_key(run_id), dump_json(body), if_generation_match=0)
        except PreconditionFailed:
            return False
        self.add_event(run_id, "damaged", f"set aside: {why}", why=why)
        if settled:
            self.leave_live(run_id)
        return True

    def unsettled_damage(self, run_id: str) -> tuple[dict[str, Any], int] | None:
        """The damage mark and its generation while the run's cleanup is not done (a mark
        written before this was known, or one that cannot be read, counts as done)."""
        try:
            data, gen = self.store.get(keys.damaged_key(run_id))
            body = json.loads(data)
        except ObjectNotFound:
            return None
        except (ValueError, RecursionError):
            return None
        if not isinstance(body, dict) or body.get("settled", True) is not False:
            return None
        return body, gen

    def settle_damage(self, run_id: str, mark: tuple[dict[str, Any], int]) -> None:
        """The cleanup of a run set aside is done: say so, and out of ``live/``."""
        body, gen = mark
        try:
            self.store.put(
                keys.damaged_key(run_id),
                dump_json({**body, "settled": True}),
                if_generation_match=gen,
            )
        except PreconditionFailed:
            pass  # settled by another agent meanwhile
        self.leave_live(run_id)

    def leave_live(self, run_id: str) -> None:
        """Out of ``live/`` and into ``ended/``: `relaunch ps` lists the run as DAMAGED."""
        entry = live.entry(self.store, run_id)
        gen = entry.generation if entry else 0
        live.ended(self.store, run_id, ended_at=time.time(), entry_generation=gen)

    # -- attempts -----------------------------------------------------------------

    def find_attempt(
        self, run_id: str, n: int, *, cached: bool = False
    ) -> tuple[AttemptRecord, int] | None:
        return self._get(keys.attempt_key(run_id, n), AttemptRecord, cached)

    def put_attempt(self, attempt: AttemptRecord, if_generation_match: int | None = None) -> int:
        return self._put(
            keys.attempt_key(attempt.run_id, attempt.n),
            attempt,
            if_generation_match=if_generation_match,
        )

    def attempts(self, run_id: str, upto: int) -> list[AttemptRecord]:
        found = (self.find_attempt(run_id, n) for n in range(1, upto + 1))
        return [a for a, _ in filter(None, found)]

    def result(self, run_id: str, n: int) -> AttemptResult | None:
        """The runtime's result of attempt ``n`` (None when absent or unreadable: as if
        the runtime died before writing it)."""
        try:
            found = self._get(keys.result_key(run_id, n), AttemptResult)
        except DamagedRecord:
            return None
        return found[0] if found else None

    def heartbeat(self, run_id: str) -> tuple[Heartbeat, int] | None:
        """The latest heartbeat (None when absent or unreadable: as if none came) — at
        the key an older runtime writes it when there is none at the current one."""
        for key in (keys.heartbeat_key(run_id), keys.legacy_heartbeat_key(run_id)):
            try:
                found = self._get(key, Heartbeat)
            except DamagedRecord:
                found = None
            if found is not None:
                return found
        return None

    # -- stop, events, logs -------------------------------------------------------

    def stop_requested(self, run_id: str) -> bool:
        key = keys.stop_key(run_id)
        if key in self._ahead:
            return self._ahead[key] is not None
        return self.store.stat(key) is not None

    def request_stop(self, run_id: str, by: str) -> None:
        """Write ``.stop`` — a new generation even when one exists: a resume clears only
        the marker it saw when it read the ended run, never a stop that came after —,
        then the stop signal under ``live/`` that agents notice in their listing (the
        marker stays the truth)."""
        body = json.dumps({"by": by, "time": time.time()}).encode()
        self.store.put(keys.stop_key(run_id), body)
        self.store.put(keys.stop_signal_key(run_id), body)

    def add_event(
        self, run_id: str, kind: str, message: str, *, attempt: int | None = None, **data: object
    ) -> None:
        now = time.time()
        event = Event(time=now, kind=kind, message=message, attempt=attempt, data=data)
        key = keys.events_prefix(run_id) + f"{time.time_ns():020d}-{os.urandom(3).hex()}.json"
        self._put(key, event, if_generation_match=0)
        eventlog.emit(kind, message, run_id=run_id, attempt=attempt, when=now, **data)

    def events(
        self, run_id: str, since: float | None = None, *, damaged: bool = False
    ) -> list[Event]:
        """The run's events, oldest first. One that cannot be read hides no other; with
        ``damaged`` it is in its place (by the time in its key) as a ``damaged_event``
        saying which object and why — what a user reading them is shown."""
        out = []
        for meta in self.store.list(keys.events_prefix(run_id)).objects:
            try:
                found = self._get(meta.key, Event)
                if found is not None and not a_time(found[0].time):
                    raise DamagedRecord(meta.key, f"its time is {found[0].time!r}, not a time")
            except ObjectNotFound:
                continue  # deleted since the listing
            except (DamagedRecord, StoreError) as e:
                if not damaged:
                    continue
                why = e.why if isinstance(e, DamagedRecord) else f"it cannot be read: {e}"
                found = damaged_event(meta.key, meta.updated_ns, why), 0
            if found and (since is None or found[0].time >= since):
                out.append(found[0])
        return sorted(out, key=lambda e: e.time)

    def logged_attempts(self, run_id: str) -> list[int]:
        """The attempts with a log in the store, found by listing (what can be shown of a
        run whose record cannot be read)."""
        prefix = keys.logs_prefix(run_id)
        names = (m.key[len(prefix) :] for m in self.store.list(prefix).objects)
        return sorted(int(n[:-4]) for n in names if n.endswith(".log") and n[:-4].isdigit())

    def log(self, run_id: str, n: int) -> bytes:
        try:
            return self.store.get(keys.log_key(run_id, n))[0]
        except ObjectNotFound:
            return b""


def _first_error(e: ValidationError, data: bytes) -> str:
    """One line about what is wrong with a stored object."""
    if not data.strip():
        return "it is empty"
    err = e.errors()[0]
    if err.get("type") == "json_invalid":
        return f"it is not valid JSON ({len(data)} bytes; truncated?)"
    where = ".".join(str(p) for p in err.get("loc", ())) or "the record"
    return f"{where}: {err.get('msg', 'invalid')}"
