"""Reading and writing runs in a store: records (by compare-and-swap), attempts,
heartbeats, results, events, stop markers."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from relaunch import eventlog
from relaunch.errors import NotFoundError, ObjectNotFound, PreconditionFailed
from relaunch.runs import keys
from relaunch.runs.records import AttemptRecord, AttemptResult, Event, Heartbeat, RunRecord
from relaunch.store.base import ObjectStore

M = TypeVar("M", bound=BaseModel)


class RunRepo:
    """Typed access to ``runs/…`` in one store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    # -- generic ------------------------------------------------------------------

    def _get(self, key: str, model: type[M]) -> tuple[M, int] | None:
        try:
            data, gen = self.store.get(key)
        except ObjectNotFound:
            return None
        return model.model_validate_json(data), gen

    def _put(self, key: str, value: BaseModel, if_generation_match: int | None = None) -> int:
        data = value.model_dump_json(exclude_none=True).encode()
        return self.store.put(key, data, if_generation_match=if_generation_match)

    # -- run records --------------------------------------------------------------

    def create_run(self, record: RunRecord) -> int:
        return self._put(keys.run_key(record.run_id), record, if_generation_match=0)

    def find_run(self, run_id: str) -> tuple[RunRecord, int] | None:
        return self._get(keys.run_key(run_id), RunRecord)

    def get_run(self, run_id: str) -> RunRecord:
        found = self.find_run(run_id)
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
            except ValidationError:
                continue
            if found is not None and found[0].run_id == run_id:
                yield found[0]

    # -- attempts -----------------------------------------------------------------

    def find_attempt(self, run_id: str, n: int) -> tuple[AttemptRecord, int] | None:
        return self._get(keys.attempt_key(run_id, n), AttemptRecord)

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
        found = self._get(keys.result_key(run_id, n), AttemptResult)
        return found[0] if found else None

    def heartbeat(self, run_id: str) -> tuple[Heartbeat, int] | None:
        return self._get(keys.heartbeat_key(run_id), Heartbeat)

    # -- stop, events, logs -------------------------------------------------------

    def stop_requested(self, run_id: str) -> bool:
        return self.store.stat(keys.stop_key(run_id)) is not None

    def request_stop(self, run_id: str, by: str) -> None:
        try:
            body = json.dumps({"by": by, "time": time.time()}).encode()
            self.store.put(keys.stop_key(run_id), body, if_generation_match=0)
        except PreconditionFailed:
            pass  # already requested

    def add_event(
        self, run_id: str, kind: str, message: str, *, attempt: int | None = None, **data: object
    ) -> None:
        now = time.time()
        event = Event(time=now, kind=kind, message=message, attempt=attempt, data=data)
        key = keys.events_prefix(run_id) + f"{time.time_ns():020d}-{os.urandom(3).hex()}.json"
        self._put(key, event, if_generation_match=0)
        eventlog.emit(kind, message, run_id=run_id, attempt=attempt, when=now, **data)

    def events(self, run_id: str, since: float | None = None) -> list[Event]:
        out = []
        for meta in self.store.list(keys.events_prefix(run_id)).objects:
            found = self._get(meta.key, Event)
            if found and (since is None or found[0].time >= since):
                out.append(found[0])
        return sorted(out, key=lambda e: e.time)

    def log(self, run_id: str, n: int) -> bytes:
        try:
            return self.store.get(keys.log_key(run_id, n))[0]
        except ObjectNotFound:
            return b""
