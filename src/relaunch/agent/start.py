"""Starting an attempt: where it goes, and submitting it — or finding it, when an agent
died between submitting and recording it (the reconciler's crash-safe write order is
described in ``reconcile.py``)."""

from __future__ import annotations

import os
import time

from relaunch.backends.base import Backend, FindsAttempts, Placement, SubmitContext
from relaunch.errors import BackendError, RelaunchError
from relaunch.placement import blocklist
from relaunch.runs.records import AttemptRecord, RunRecord
from relaunch.runs.repo import RunRepo
from relaunch.spec.templates import resolve_macros
from relaunch.states import AttemptState, Reason


def end_attempt(attempt: AttemptRecord, reason: Reason, detail: str | None) -> None:
    attempt.state, attempt.reason, attempt.detail = AttemptState.ENDED, reason, detail
    attempt.ended_at = time.time()


class Starter:
    def __init__(self, repo: RunRepo) -> None:
        self.repo = repo

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

    def submit(self, run: RunRecord, attempt: AttemptRecord, backend: Backend) -> None:
        """Submit (or find) the attempt; fills handle or ends it with a reason."""
        if isinstance(backend, FindsAttempts):
            try:
                handle = backend.find(run, attempt)
            except BackendError as e:
                if e.reason != Reason.TRANSIENT.value:
                    self._could_not_start(run, attempt, Reason(e.reason), e)
                # Transient: whether it exists is unknown, so never submit now; ask again.
                return
            if handle is not None:
                attempt.handle, attempt.state = handle, AttemptState.PENDING
                self.repo.add_event(
                    run.run_id,
                    "attempt-found",
                    f"attempt {attempt.n} found running after an agent restart",
                    attempt=attempt.n,
                )
                return
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
            )
            attempt.handle = backend.submit(run, attempt, ctx)
        except RelaunchError as e:
            reason = Reason(e.reason) if isinstance(e, BackendError) else Reason.USER_ERROR
            self._could_not_start(run, attempt, reason, e)
            return
        attempt.state = AttemptState.PENDING
        where = backend.where(attempt.handle)

        def place(r: RunRecord) -> None:
            r.where = where

        self.repo.update_run(run.run_id, place)
        self.repo.add_event(
            run.run_id,
            "attempt-submitted",
            f"attempt {attempt.n} started on {run.backend} ({where})",
            attempt=attempt.n,
        )
