"""Resuming an ended run under its own id (``relaunch resume``).

The run is queued again: its attempt numbers go on, the next attempt restores the run's
last committed checkpoint (it is the same run, so the same ``checkpoints/LATEST``), and
``WANDB_RUN_ID`` — the run id — stays the same. The order of writes is what keeps racing
resumes, stops and agents from ever yielding two live attempts:

1. The record is read (generation G). It must have ended — SUCCEEDED, FAILED or
   STOPPED, its run-ended event written (a live agent is given a few seconds to write
   it; an agent that died before writing it leaves it to the resume) — so its last
   attempt has ENDED and its backend said nothing of it runs.
2. The previous life's ``.stop`` (as seen now) is deleted *by generation*. A stop issued
   since overwrote it with a new generation (``RunRepo.request_stop``): the delete fails
   and the resume is refused — that stop wins.
3. The record becomes the new life by compare-and-swap over G (its entry in the live
   index, ``runs/live.py``, written just before and touched again just after): QUEUED,
   a new ``nonce``, ``decided == attempt`` (the last attempt's outcome is applied, so an agent names
   attempt n+1 next), a fresh recovery budget, none of the previous end's fields. Of two
   racing resumes exactly one wins here; the other has written nothing but step 2's
   delete, which both wanted. A stop issued after this sees a live run and wins as usual;
   one issued between 2 and 3 left a ``.stop`` that the new life obeys before it starts.
4. ``--from-scratch`` over a committed checkpoint: the new life is written held
   (``not_before``), the checkpoint discarded, then the hold lifted — no attempt can
   restore what is being discarded.
5. The ``resumed`` event, then a new queue item carrying the new nonce. A resume that
   dies before its item leaves a QUEUED run with no item and no lease: agents adopt it
   (``agent/adopt.py``, after a grace that a resume on its way to its item needs).
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from relaunch import faults
from relaunch.errors import (
    NotFoundError,
    ObjectNotFound,
    PreconditionFailed,
    RelaunchError,
    UserInputError,
)
from relaunch.runs import keys, leases, live, queue
from relaunch.runs.records import RunRecord
from relaunch.runs.repo import RunRepo
from relaunch.states import RunState
from relaunch.store.base import ObjectStore

#: How long a resume waits for a live agent to write the run-ended event of the run.
SAY_ENDED_WAIT = 5.0
#: How long a --from-scratch resume holds its new life while it discards the checkpoint.
HOLD = 120.0

_SEQ_MANIFEST = re.compile(r"^\d{8}\.json$")  # checkpoints/<seq>.json, beside LATEST

#: What a new spec replaces in the record (the rest is the run's history).
SPEC_FIELDS = (
    "name",
    "queue",
    "priority",
    "backend",
    "spec",
    "base_dir",
    "project",
    "gcp",
    "image_uri",
    "job_file",
    "template_values",
)


@dataclass(frozen=True)
class Checkpoint:
    """A committed checkpoint, as ``checkpoints/LATEST`` names it."""

    seq: int
    step: int | None
    attempt: int | None

    def describe(self) -> str:
        step = "an unknown step" if self.step is None else f"step {self.step}"
        by = f" of attempt {self.attempt}" if self.attempt else ""
        return f"checkpoint {self.seq} ({step}{by})"


@dataclass(frozen=True)
class Resumed:
    run_id: str
    attempt: int  # the attempt that runs next
    checkpoint: Checkpoint | None  # what that attempt restores (None: it starts at step 0)
    discarded: Checkpoint | None  # the checkpoint --from-scratch set aside
    queue: str


def committed_checkpoint(store: ObjectStore, run_id: str) -> Checkpoint | None:
    """The checkpoint the next attempt restores: LATEST, or when LATEST is missing or
    unreadable the newest ``checkpoints/<seq>.json`` manifest (the runtime falls back
    the same way); None when nothing was committed."""
    found = _manifest(store, keys.latest_checkpoint_key(run_id))
    if found is not None:
        return found
    prefix = keys.checkpoints_prefix(run_id)
    seqs = [m.key for m in store.list(prefix, delimiter="/").objects]
    for key in sorted((k for k in seqs if _SEQ_MANIFEST.match(k[len(prefix) :])), reverse=True):
        found = _manifest(store, key)
        if found is not None:
            return found
    return None


def _manifest(store: ObjectStore, key: str) -> Checkpoint | None:
    try:
        body = json.loads(store.get(key)[0])
        step, attempt = body.get("step"), body.get("attempt")
        return Checkpoint(
            int(body["seq"]),
            int(step) if step is not None else None,
            int(attempt) if attempt is not None else None,
        )
    except ObjectNotFound:
        return None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # the runtime cannot restore it either


def who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "?"
    return f"{user}@{socket.gethostname()}"


def ended_run(repo: RunRepo, run_id: str) -> tuple[RunRecord, int]:
    """The run's record and generation when it can be resumed; the refusal otherwise."""
    found = repo.find_run(run_id)
    if found is None:
        raise NotFoundError(
            f"no run {run_id!r} in {repo.store.url}", hint="`relaunch ps --all` lists the runs"
        )
    run, gen = found
    why = repo.damaged(run_id)
    if why is not None:
        raise UserInputError(
            f"run {run_id} was set aside as damaged ({why}); it cannot be resumed",
            hint="start a new run with `relaunch run JOB.yaml`",
        )
    if not run.state.terminal:
        raise UserInputError(
            f"run {run_id} is {run.state.value}: it has not ended",
            hint=f"`relaunch stop {run_id}` first, then resume it",
        )
    return run, gen


def check_spec(run: RunRecord, new: RunRecord, *, from_scratch: bool) -> None:
    """Refuse a new spec that cannot continue the run's checkpoint."""
    source = new.job_file or "the job"
    if new.spec.run_id and new.spec.run_id != run.run_id:
        raise UserInputError(
            f"{source}: run_id {new.spec.run_id!r} is not the run being resumed ({run.run_id})",
            hint="drop run_id from the job file, or resume that run instead",
        )
    if from_scratch:
        return
    old, now = run.spec.checkpoints, new.spec.checkpoints
    if not now.enabled:
        raise UserInputError(
            f"{source}: checkpoints are disabled, so the run's checkpoint would not be restored",
            hint="enable checkpoints, or add --from-scratch to rerun it from step 0",
        )
    if (old.dir or None) != (now.dir or None):
        raise UserInputError(
            f"{source}: checkpoints.dir is {now.dir!r}, but the run's checkpoint was "
            f"committed from {old.dir!r}: the trainer would not find it",
            hint=f"keep checkpoints.dir: {old.dir or 'unset'}, or add --from-scratch",
        )


def _live_lease(store: ObjectStore, run_id: str) -> leases.Lease | None:
    return leases.live_lease(store, run_id)


def job_file_of(run: RunRecord) -> Path:
    """The job file ``run`` was queued from (``resume --set`` without a JOB.yaml)."""
    if run.job_file is None or not Path(run.job_file).is_file():
        where = f" ({run.job_file} is gone)" if run.job_file else ""
        raise UserInputError(
            f"--set needs the job file of run {run.run_id}{where}",
            hint=f"name it: relaunch resume {run.run_id} JOB.yaml --set NAME=VALUE",
        )
    return Path(run.job_file)


def check(repo: RunRepo, run: RunRecord, new: RunRecord | None, *, from_scratch: bool) -> None:
    """Every refusal of resuming the ended ``run`` (with ``new``'s spec, if any)."""
    if new is not None:
        check_spec(run, new, from_scratch=from_scratch)
    if not from_scratch and committed_checkpoint(repo.store, run.run_id) is None:
        raise UserInputError(
            f"run {run.run_id} has no committed checkpoint: resuming would start it over",
            hint=f"`relaunch resume {run.run_id} --from-scratch` reruns it from step 0",
        )


def resume(
    repo: RunRepo,
    run_id: str,
    new: RunRecord | None = None,
    *,
    from_scratch: bool = False,
    by: str | None = None,
) -> Resumed:
    """Queue the ended run ``run_id`` again (with the spec of ``new``, if given, already
    validated). Every refusal comes before the first write."""
    store = repo.store
    run, gen = ended_run(repo, run_id)
    check(repo, run, new, from_scratch=from_scratch)
    ckpt = committed_checkpoint(store, run_id)
    deadline = time.monotonic() + SAY_ENDED_WAIT
    while not run.ended_event and time.monotonic() < deadline and _live_lease(store, run_id):
        time.sleep(0.1)  # its agent writes the run-ended event right after the end
        run, gen = ended_run(repo, run_id)
    if not run.ended_event:
        lease = _live_lease(store, run_id)
        if lease is not None:
            raise UserInputError(
                f"run {run_id} is still being concluded by agent {lease.agent_id}",
                hint="try again in a few seconds",
            )
        from relaunch.agent.reconcile import say_ended

        say_ended(repo, run)  # its agent died before saying so: the history says it
        run, gen = ended_run(repo, run_id)
    # -- writes from here on ---------------------------------------------------------
    signal = store.stat(keys.stop_signal_key(run_id))
    _clear_previous_stop(store, run_id)
    if signal is not None:  # the previous life's signal (a newer stop refused the resume)
        try:
            store.delete(keys.stop_signal_key(run_id), if_generation_match=signal.generation)
        except PreconditionFailed:
            pass
    store.delete(keys.preempt_key(run_id))  # a preemption asked of the previous life
    by = by or who()
    nonce = os.urandom(8).hex()
    discard = ckpt if from_scratch else None
    hold = time.time() + HOLD if discard is not None else None
    ended = run.state
    _new_life(run, new, nonce, by, hold)
    # Back in the live index before the record says QUEUED, and touched again after: a
    # cleanup of the previous life deletes the entry only by a generation it saw earlier.
    _index(store, run)
    faults.hit("resume-before-record")
    try:
        repo.put_run(run, if_generation_match=gen)
    except PreconditionFailed:
        now = repo.get_run(run_id)
        raise RelaunchError(
            f"run {run_id} changed while resuming it: it is {now.state.value} now",
            hint=f"`relaunch status {run_id}` shows what happened",
        ) from None
    _index(store, run)
    if discard is not None:
        _discard(store, run_id)
        _lift_hold(repo, run_id, nonce)
    restored = None if from_scratch else ckpt
    start = f"from {restored.describe()}" if restored else "from step 0"
    repo.add_event(
        run_id,
        "resumed",
        f"resumed by {by} after it {_ended_as(ended)}: attempt {run.attempt + 1} starts {start}"
        + (f" ({discard.describe()} discarded)" if discard else ""),
        by=by,
        attempt_next=run.attempt + 1,
        checkpoint=restored.seq if restored else None,
        step=restored.step if restored else None,
        job=run.job_file if new is not None else None,
    )
    faults.hit("resume-before-item")
    queue.requeue(store, run)
    return Resumed(run_id, run.attempt + 1, restored, discard, run.queue)


def _index(store: ObjectStore, run: RunRecord) -> None:
    live.add(store, run.run_id, queue=run.queue, backend=run.backend, created_at=run.created_at)


def _ended_as(state: RunState) -> str:
    return {RunState.SUCCEEDED: "succeeded", RunState.FAILED: "failed"}.get(state, "was stopped")


def _clear_previous_stop(store: ObjectStore, run_id: str) -> None:
    """Delete the ``.stop`` of the previous life — only the one seen now (step 2)."""
    meta = store.stat(keys.stop_key(run_id))
    faults.hit("resume-before-stop-cleared")
    if meta is None:
        return
    try:
        store.delete(keys.stop_key(run_id), if_generation_match=meta.generation)
    except PreconditionFailed:
        if store.stat(keys.stop_key(run_id)) is None:
            return  # another resume deleted it (or our answer was lost)
        raise RelaunchError(
            f"a stop of run {run_id} was requested while resuming it; it stays ended",
            hint=f"resume it again with `relaunch resume {run_id}` if that stop was old",
        ) from None


def _new_life(r: RunRecord, new: RunRecord | None, nonce: str, by: str, hold: float | None) -> None:
    if new is not None:
        for name in SPEC_FIELDS:
            setattr(r, name, getattr(new, name))
    r.state, r.nonce, r.owner = RunState.QUEUED, nonce, None
    r.decided = r.attempt  # the last attempt's outcome is applied: attempt n+1 comes next
    r.recoveries = r.restarts = r.offer_index = r.killed_streak = 0
    r.not_before = hold
    r.reason = r.note = r.detail = r.why = None
    r.ended_at, r.ended_event = None, True
    r.resumes += 1
    r.resumed_at, r.resumed_by, r.first_attempt = time.time(), by, r.attempt + 1
    r.updated_at = time.time()


def _discard(store: ObjectStore, run_id: str) -> None:
    """Discard the run's checkpoints: LATEST, then every manifest, then their files — a
    discard cut short leaves only whole checkpoints behind (nothing writes them while
    the new life is held)."""
    prefix = keys.checkpoints_prefix(run_id)
    store.delete(keys.latest_checkpoint_key(run_id))
    objects = [m.key for m in store.list(prefix).objects]
    manifests = [k for k in objects if _SEQ_MANIFEST.match(k[len(prefix) :])]
    for key in manifests + [k for k in objects if k not in manifests]:
        store.delete(key)


def _lift_hold(repo: RunRepo, run_id: str, nonce: str) -> None:
    def lift(r: RunRecord) -> bool:
        if r.nonce != nonce or r.not_before is None:
            return False
        r.not_before = None
        return True

    repo.update_run(run_id, lift)
