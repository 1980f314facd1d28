"""Setting a damaged run aside (DESIGN.md §7.4: poison is local).

A run whose record cannot be read or validated is marked DAMAGED once — whichever agent
comes first writes ``runs/<id>/damaged.json`` with a create-only write and records the
event —, whatever of it may still run is cancelled (nobody can manage it any more, and a
trainer nobody watches must not run on), and a readable run record ends FAILED, so
nothing waits on it for ever. ``relaunch ps`` lists the run as DAMAGED with why.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from relaunch.backends.registry import get_backend
from relaunch.errors import DamagedRecord, RelaunchError
from relaunch.runs import keys
from relaunch.runs.records import RunRecord
from relaunch.runs.repo import RunRepo
from relaunch.runs.summary import SET_ASIDE
from relaunch.states import RunState


def set_aside(
    repo: RunRepo, run_id: str, e: DamagedRecord, agent_id: str, log: Callable[[str], None]
) -> None:
    """Called by the agent that holds the run's lease. Picks up where an earlier call
    was cut short (a store error, an agent that died): until the mark says the cleanup
    is done, the run stays in ``live/``, where the adoption scan finds it again."""
    why = e.why if e.key == keys.run_key(run_id) else str(e)
    if repo.mark_damaged(run_id, why, agent_id, settled=False):
        log(f"{run_id}: set aside: {e}")
    elif repo.unsettled_damage(run_id) is None:
        return  # set aside and cleaned up already
    else:
        log(f"{run_id}: finishing setting it aside")
    ended = _end_live_attempts(repo, run_id, log)
    _fail_readable_record(repo, run_id, e)
    if not ended:
        return  # in live/ still: the next adoption scan tries the cancel again
    # Its runtime wrote on until it was cancelled: the set-aside run leaves live/.
    repo.store.delete(keys.heartbeat_key(run_id))
    mark = repo.unsettled_damage(run_id)
    if mark is not None:
        repo.settle_damage(run_id, mark)


def _fail_readable_record(repo: RunRepo, run_id: str, e: DamagedRecord) -> None:
    if e.key == keys.run_key(run_id):
        return

    def fail(r: RunRecord) -> bool:
        if r.state.terminal:
            return False
        r.state, r.ended_at, r.detail = RunState.FAILED, time.time(), f"{SET_ASIDE}{e}"
        return True

    try:
        repo.update_run(run_id, fail)
    except DamagedRecord:
        pass  # the record went bad meanwhile: ps lists the run as DAMAGED all the same


def _end_live_attempts(repo: RunRepo, run_id: str, log: Callable[[str], None]) -> bool:
    """Cancel every attempt that may still run; False when a cancel failed."""
    ended = True
    for meta in repo.store.list(keys.run_prefix(run_id) + "attempts/").objects:
        if meta.key.endswith(".result.json"):
            continue
        try:
            found = repo.find_attempt(run_id, int(meta.key.rsplit("/", 1)[1].split(".")[0]))
        except (DamagedRecord, ValueError):
            continue
        attempt = found[0] if found else None
        if attempt is None or attempt.handle is None or attempt.state.terminal:
            continue
        try:
            get_backend(attempt.backend).cancel(attempt.handle, 0)
        except RelaunchError as error:
            log(f"{run_id}: could not cancel attempt {attempt.n}: {error}")
            ended = False
            continue
        repo.add_event(run_id, "cancel", f"attempt {attempt.n}: the run is damaged; cancelled")
    return ended


__all__ = ["set_aside"]
