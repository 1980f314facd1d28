"""Starting an attempt: where it goes, and submitting it — or finding it, or its end,
when an agent died or froze between submitting and recording it.

Fencing (DESIGN.md §7.1): an attempt is submitted only after two conditional writes,
the agent's lease renewed (``confirm``) and the attempt record stamped with a new
fencing token (compare-and-swap over the generation that was read). The token travels
to the runtime as ``RELAUNCH_FENCE``; the runtime runs the command only while the
attempt record still names its token. So an agent that froze after deciding to submit
and wakes up after another agent took over can still reach the backend — but what it
starts never runs the command, and it cancels it as soon as it learns.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable

from relaunch import faults
from relaunch.backends.base import Backend, FindsAttempts, Handle, Placement, SubmitContext
from relaunch.errors import BackendError, PreconditionFailed, RelaunchError
from relaunch.placement import blocklist
from relaunch.runs.records import AttemptRecord, RunRecord
from relaunch.runs.repo import RunRepo
from relaunch.spec.templates import resolve_macros
from relaunch.states import AttemptState, Reason

#: Renews the agent's lease of the run now (a conditional write), or raises LeaseLost.
Confirm = Callable[[], None]


class LeaseLost(RelaunchError):
    """The agent no longer owns the run: it must not act on it."""


def end_attempt(attempt: AttemptRecord, reason: Reason, detail: str | None) -> None:
    attempt.state, attempt.reason, attempt.detail = AttemptState.ENDED, reason, detail
    attempt.ended_at = time.time()


class Starter:
    def __init__(self, repo: RunRepo, agent_id: str = "") -> None:
        self.repo = repo
        self.agent_id = agent_id

    def place(self, run: RunRecord, backend: Backend) -> Placement:
        """The run's current offer, passing over places refused recently (any run)."""
        offers = backend.offers(run)
        keys = [backend.place_key(run, offer) for offer in offers]
        if not any(keys):
            return offers[run.offer_index % len(offers)]
        offer, skipped = blocklist.choose(
            offers, run.offer_index, keys, blocklist.blocked(self.repo.store)
        )
        for hit in skipped:
            until = time.strftime("%H:%M", time.localtime(hit.until))
            self.repo.add_event(
                run.run_id,
                "placement-skipped",
                f"attempt {run.attempt}: skipping {hit.place} ({hit.reason} there, "
                f"avoided until {until})",
                attempt=run.attempt,
            )
        return offer

    def _could_not_start(
        self, run: RunRecord, attempt: AttemptRecord, reason: Reason, error: RelaunchError
    ) -> None:
        end_attempt(attempt, reason, str(error))
        self.repo.add_event(
            run.run_id,
            "attempt-ended",
            f"attempt {attempt.n} could not start: {reason.value} — {error}",
            attempt=attempt.n,
            reason=reason.value,
        )

    def start(
        self, run: RunRecord, attempt: AttemptRecord, gen: int, backend: Backend, confirm: Confirm
    ) -> int:
        """Submit (or find) the attempt, recording its handle, or end it with a reason;
        everything it changes in ``attempt`` is written before it returns. Returns the
        attempt record's generation; raises PreconditionFailed when another agent wrote
        the record meanwhile (look again)."""
        # With a token, a submission may have happened (its agent died or froze before
        # recording it): never submit blindly. Its end, or the attempt itself, may be found.
        if attempt.token is not None and (
            self._ended_meanwhile(run, attempt) or self._found(run, attempt, backend)
        ):
            return self.repo.put_attempt(attempt, if_generation_match=gen)
        confirm()
        attempt.token, attempt.submitter = secrets.token_hex(8), self.agent_id
        attempt.state = AttemptState.SUBMITTING
        gen = self.repo.put_attempt(attempt, if_generation_match=gen)  # the intent
        faults.hit("before-submit")
        handle = self._submit(run, attempt, backend)
        faults.hit("after-submit")
        if handle is None:  # refused: ended with the reason
            return self.repo.put_attempt(attempt, if_generation_match=gen)
        attempt.handle, attempt.state = handle, AttemptState.PENDING
        try:
            gen = self.repo.put_attempt(attempt, if_generation_match=gen)
        except PreconditionFailed:
            self._superseded(run, attempt, backend, handle)
            raise
        where = backend.where(handle)

        def place(r: RunRecord) -> None:
            r.where = where

        self.repo.update_run(run.run_id, place)
        self.repo.add_event(
            run.run_id,
            "attempt-submitted",
            f"attempt {attempt.n} started on {run.backend} ({where})",
            attempt=attempt.n,
        )
        return gen

    def _ended_meanwhile(self, run: RunRecord, attempt: AttemptRecord) -> bool:
        """The attempt already ran and ended before anyone recorded its handle: its
        runtime's result is in the store. Concludes it from that result."""
        result = self.repo.result(run.run_id, attempt.n)
        if result is None:
            return False
        attempt.exit_code, attempt.last_lines = result.exit_code, result.last_lines
        if result.final_step is not None:
            attempt.last_step = result.final_step
        reason = result.reason or Reason.TRANSIENT
        end_attempt(attempt, reason, result.detail)
        self.repo.add_event(
            run.run_id,
            "attempt-ended",
            f"attempt {attempt.n} ended before an agent recorded it: {reason.value} — "
            f"{result.detail or ''}".rstrip(" —"),
            attempt=attempt.n,
            reason=reason.value,
        )
        return True

    def _found(self, run: RunRecord, attempt: AttemptRecord, backend: Backend) -> bool:
        """Looks for the attempt on the backend (by run id and number); True when it was
        found, or when whether it exists cannot be told now (ask again next tick)."""
        if not isinstance(backend, FindsAttempts):
            return False
        try:
            handle = backend.find(run, attempt)
        except BackendError as e:
            if e.reason != Reason.TRANSIENT.value:
                self._could_not_start(run, attempt, Reason(e.reason), e)
            return True  # transient: whether it exists is unknown, so never submit now
        if handle is None:
            return False
        attempt.handle, attempt.state = handle, AttemptState.PENDING
        self.repo.add_event(
            run.run_id,
            "attempt-found",
            f"attempt {attempt.n} found running after an agent restart",
            attempt=attempt.n,
        )
        return True

    def _submit(self, run: RunRecord, attempt: AttemptRecord, backend: Backend) -> Handle | None:
        macros = {
            "run_id": run.run_id,
            "run_name": run.spec.name,
            "attempt": str(attempt.n),
            "image_uri": run.image_uri or run.spec.image or "",
            "project_name": run.project.get("name") or "",
            "entity_name": run.project.get("entity") or "",
        }
        try:
            command = [resolve_macros(a, macros, os.environ) for a in run.spec.argv]
            env = {k: resolve_macros(v, macros, os.environ) for k, v in run.spec.env.items()}
            ctx = SubmitContext(
                store=self.repo.store,
                command=command,
                env=env,
                placement=attempt.placement,
                image_uri=run.image_uri,
                macros=macros,
                token=attempt.token,
            )
            return backend.submit(run, attempt, ctx)
        except RelaunchError as e:
            reason = Reason(e.reason) if isinstance(e, BackendError) else Reason.USER_ERROR
            self._could_not_start(run, attempt, reason, e)
            return None

    def _superseded(
        self, run: RunRecord, attempt: AttemptRecord, backend: Backend, handle: Handle
    ) -> None:
        """Another agent took the attempt over while this one was submitting it (this
        one froze past its lease). What this one started never runs the command (its
        token is not the record's); end it rather than leave it to time out."""
        found = self.repo.find_attempt(run.run_id, attempt.n)
        if found is not None and found[0].token == attempt.token:
            return  # the other agent found and recorded this very submission
        try:
            backend.cancel(handle, 0)
        except RelaunchError:
            pass
        self.repo.add_event(
            run.run_id,
            "duplicate-cancelled",
            f"attempt {attempt.n}: agent {self.agent_id} lost the run while submitting it; "
            "its submission was cancelled (it never ran the command)",
            attempt=attempt.n,
        )
