"""Reconciling one run: bring the world in line with its record, one step per tick.

Everything it decides from is in the store (run record, attempt record, heartbeat,
``.stop``, the runtime's result) or asked of the backend, so any agent can run it for
any run it holds the lease of, after any crash. The order of writes is what keeps a
crash harmless:

- a new attempt is first *named* in the run record (``attempt = n``), then recorded as
  SUBMITTING, then submitted, then its handle recorded. A SUBMITTING attempt without a
  handle is looked for (``FindsAttempts``) before it is ever submitted again;
- attempt n+1 is only named once attempt n has ENDED, and a backend says ENDED only
  when nothing of the attempt runs any more — so two attempts never run at once.
"""

from __future__ import annotations

import threading
import time

from relaunch import faults
from relaunch.agent.policy import decide
from relaunch.agent.start import Confirm, Starter, end_attempt
from relaunch.agent.supervise import Supervisor, Watch
from relaunch.backends.base import (
    AttemptStatus,
    Backend,
)
from relaunch.backends.registry import get_backend
from relaunch.errors import BackendError, DamagedRecord, PreconditionFailed
from relaunch.placement import blocklist
from relaunch.runs import keys, live
from relaunch.runs.records import AttemptRecord, Heartbeat, RunRecord
from relaunch.runs.repo import RunRepo
from relaunch.states import REASON_NOTES, AttemptState, Reason, RunState

POLL_SLACK = 0.5  # seconds


class Reconciler:
    def __init__(self, repo: RunRepo, agent_id: str) -> None:
        self.repo = repo
        self.agent_id = agent_id
        self.supervisor = Supervisor(repo)
        self.starter = Starter(repo, agent_id)
        # Whether the step in hand named a new attempt; one per thread (an agent on a
        # bucket reconciles runs concurrently: agent/workers.py).
        self._step_local = threading.local()

    # -- entry point ----------------------------------------------------------------

    def reconcile(self, run_id: str, watch: Watch, confirm: Confirm) -> bool:
        """Bring ``run_id`` forward. Returns True when the run is terminal. ``confirm``
        renews this agent's lease of the run; it is called right before every action on
        the backend (submit, cancel, kill), and raises LeaseLost when the run is gone."""
        # A step that named a new attempt goes straight on to submit it: recovery after
        # a preemption should not wait for the next tick.
        for _ in range(3):
            self._step_local.named_attempt = False
            if self._step(run_id, watch, confirm):
                return True
            if not self._step_local.named_attempt:
                return False
        return False

    def _step(self, run_id: str, watch: Watch, confirm: Confirm) -> bool:
        held = self.repo.find_run(run_id, cached=True)
        if held is None:  # an agent holds it, so it had one: deleted by hand
            raise DamagedRecord(keys.run_key(run_id), "it is missing (deleted?)")
        run = held[0]
        if run.state.terminal:
            if not run.ended_event:  # the agent that ended it died before saying so
                self._say_ended(run)
            return True
        stop = self.repo.stop_requested(run_id)
        backend = get_backend(run.backend)
        if run.attempt == 0:
            if stop:
                return self._finish(run, RunState.STOPPED, Reason.STOPPED, "stopped before start")
            run = self._name_attempt(run, 1)
        found = self.repo.find_attempt(run_id, run.attempt, cached=True)
        if found is None and run.state is RunState.RUNNING:
            # Named, then written, then seen running: not an attempt still to write.
            # Written again, it would start a second life under the same number.
            key = keys.attempt_key(run_id, run.attempt)
            raise DamagedRecord(key, "it is missing (deleted?)")
        if found is None:
            attempt = AttemptRecord(
                run_id=run_id,
                n=run.attempt,
                backend=run.backend,
                placement=self.starter.place(run, backend),
            )
            try:
                self.repo.put_attempt(attempt, if_generation_match=0)
            except PreconditionFailed:
                return False  # someone else wrote it: look again next tick
            found = self.repo.find_attempt(run_id, run.attempt)
            assert found is not None
        attempt, gen = found
        if attempt.state is not AttemptState.ENDED:
            try:
                attempt = self._watch_attempt(run, attempt, gen, backend, stop, watch, confirm)
            except PreconditionFailed:
                return False  # another agent wrote the attempt meanwhile: look again
        if attempt.state is AttemptState.ENDED:
            return self._after_attempt(run, attempt, stop, watch)
        return False

    # -- attempts -------------------------------------------------------------------

    def _name_attempt(self, run: RunRecord, n: int) -> RunRecord:
        def name(r: RunRecord) -> bool:
            if r.attempt >= n:
                return False
            r.attempt, r.not_before, r.owner = n, None, self.agent_id
            self._step_local.named_attempt = True
            # A resumed run (QUEUED again after it ended) starts, it does not recover.
            first = n == 1 or r.state is RunState.QUEUED
            r.state = RunState.STARTING if first else RunState.RECOVERING
            return True

        return self.repo.update_run(run.run_id, name)

    def _watch_attempt(
        self,
        run: RunRecord,
        attempt: AttemptRecord,
        gen: int,
        backend: Backend,
        stop: bool,
        watch: Watch,
        confirm: Confirm,
    ) -> AttemptRecord:
        before = attempt.model_dump()
        now = time.time()
        if attempt.handle is None:
            if stop:
                end_attempt(attempt, Reason.STOPPED, "stopped before the attempt started")
            else:
                gen = self.starter.start(run, attempt, gen, backend, confirm)
                before = attempt.model_dump()  # start() wrote what it changed
                watch.hb_seen, watch.next_poll = now, 0.0
        if attempt.handle is not None and attempt.state is not AttemptState.ENDED:
            self._observe(run, attempt, backend, stop, watch, now, confirm)
        if attempt.model_dump() != before:
            self.repo.put_attempt(attempt, if_generation_match=gen)
        return attempt

    def _observe(
        self,
        run: RunRecord,
        attempt: AttemptRecord,
        backend: Backend,
        stop: bool,
        watch: Watch,
        now: float,
        confirm: Confirm,
    ) -> None:
        assert attempt.handle is not None
        heartbeat = self._heartbeat(run, attempt, watch, now)  # may make a poll due now
        status = watch.last_status
        # Due a little early rather than a whole tick late: ticks and polls drift apart.
        slack = min(POLL_SLACK, backend.poll_interval / 4)
        # An ENDED answer is final (read ahead this tick, say): asking again could be
        # answered by what relaunch itself did since (GCE deletes the stopped VM).
        if status is None or (
            now >= watch.next_poll - slack and status.state is not AttemptState.ENDED
        ):
            try:
                status = backend.poll(attempt.handle)
            except BackendError as e:
                status = watch.last_status or AttemptStatus(AttemptState.PENDING, detail=str(e))
            watch.last_status, watch.next_poll = status, now + backend.poll_interval
        # An attempt that ran and ended between two ticks still shows that it ran.
        started = heartbeat is not None and heartbeat.phase not in ("not-started", "starting")
        if heartbeat is not None and started and attempt.running_at is None:
            attempt.running_at, attempt.state = now, AttemptState.RUNNING
            attempt.first_step = (
                heartbeat.resumed_from
                if heartbeat.resumed_from is not None
                else heartbeat.step or 0
            )
            resumed = (
                f" (resumed from step {heartbeat.resumed_from})"
                if heartbeat.resumed_from is not None
                else ""
            )
            self.repo.add_event(
                run.run_id,
                "attempt-running",
                f"attempt {attempt.n} is running{resumed}",
                attempt=attempt.n,
            )
            self._set_running(run)
        if status.state is AttemptState.ENDED:
            # The live step is read from the heartbeat; the attempt record keeps the last
            # one only (rewriting it on every heartbeat cost a write per run per tick).
            if heartbeat is not None and heartbeat.step is not None:
                attempt.last_step = heartbeat.step
            if heartbeat is not None and heartbeat.total is not None:
                attempt.total = heartbeat.total
            self._conclude(run, attempt, status)
            watch.last_status = None
            return
        self.supervisor.enforce(run, attempt, backend, stop, watch, heartbeat, now, confirm)

    def _heartbeat(
        self, run: RunRecord, attempt: AttemptRecord, watch: Watch, now: float
    ) -> Heartbeat | None:
        found = self.repo.heartbeat(run.run_id)
        if found is None or found[0].attempt != attempt.n:
            return None
        heartbeat, hb_gen = found
        if heartbeat.token and attempt.token and heartbeat.token != attempt.token:
            return None  # a superseded submission's runtime: not this attempt's
        if hb_gen != watch.hb_generation:
            watch.hb_generation, watch.hb_seen = hb_gen, now
            if heartbeat.phase in ("exited", "not-started"):
                watch.next_poll = 0.0  # the command is over: ask the backend now
            if heartbeat.phase != "starting":  # a restarted runtime says more when it runs
                self._note_restart(run, attempt, heartbeat)
        return heartbeat

    def _note_restart(self, run: RunRecord, attempt: AttemptRecord, heartbeat: Heartbeat) -> None:
        """A new runtime instance within one attempt: the platform restarted the
        container in place (Vertex does after a spot VM is reclaimed, or a worker exits)."""
        instance = heartbeat.instance
        if instance is None or instance == attempt.instance:
            return
        if attempt.instance is not None:
            attempt.restarts_in_place += 1
            resumed = heartbeat.resumed_from
            self.repo.add_event(
                run.run_id,
                "attempt-restarted",
                f"attempt {attempt.n}: the container was restarted in place on "
                f"{heartbeat.host or 'a new machine'}"
                + (f" (resumed from step {resumed})" if resumed is not None else ""),
                attempt=attempt.n,
            )
        attempt.instance = instance

    def _set_running(self, run: RunRecord) -> None:
        def running(r: RunRecord) -> bool:
            if r.state in (RunState.STOPPING, RunState.RUNNING) or r.state.terminal:
                return False
            r.state = RunState.RUNNING
            r.started_at = r.started_at or time.time()
            return True

        self.repo.update_run(run.run_id, running)

    def _conclude(self, run: RunRecord, attempt: AttemptRecord, status: AttemptStatus) -> None:
        """The attempt is over: settle its reason from what relaunch itself did, then the
        backend's word, then the runtime's result."""
        result = self.repo.result(run.run_id, attempt.n)
        if result is not None:
            attempt.exit_code, attempt.last_lines = result.exit_code, result.last_lines
            if result.final_step is not None:
                attempt.last_step = result.final_step
        if attempt.cancel_reason is not None:
            reason, detail = attempt.cancel_reason, attempt.detail
        elif attempt.preemption is not None:
            reason, detail = Reason.PREEMPTED, "simulated spot preemption"
        elif status.reason is not None and not (
            status.runtime_knows_why and result is not None and result.reason
        ):
            reason, detail = status.reason, status.detail
        elif result is not None and result.reason is not None:
            reason, detail = result.reason, result.detail
        else:
            reason, detail = (
                Reason.TRANSIENT,
                "the attempt ended without a result (killed "
                "from outside relaunch, or its machine died)",
            )
        if status.runtime_knows_why and result is None and attempt.running_at is None:
            # The container failed and the runtime never said a word: it did not start.
            detail = (
                f"{detail} — the relaunch runtime never reported: is relaunch[gcp] installed "
                "in the image? (`relaunch logs RUN --cloud` shows the container's output)"
            )
        end_attempt(attempt, reason, detail)
        attempt.exit_code = attempt.exit_code if status.exit_code is None else status.exit_code
        self.repo.add_event(
            run.run_id,
            "attempt-ended",
            f"attempt {attempt.n} ended: {reason.value} — {detail}",
            attempt=attempt.n,
            reason=reason.value,
        )

    # -- after an attempt -----------------------------------------------------------

    def _after_attempt(
        self, run: RunRecord, attempt: AttemptRecord, stop: bool, watch: Watch
    ) -> bool:
        assert attempt.reason is not None
        if run.decided < attempt.n:
            backend = get_backend(run.backend)
            for place in backend.refused_places(run, attempt.placement, attempt.reason):
                if blocklist.block(self.repo.store, place, attempt.reason, attempt.detail or ""):
                    self.repo.add_event(
                        run.run_id,
                        "placement-blocked",
                        f"{place}: {attempt.reason.value}; other runs avoid it for a while",
                        attempt=attempt.n,
                    )
            offers = len(backend.offers(run))
            decision = decide(run, attempt.reason, stop_requested=stop, offers=offers)
            if decision.state.terminal:
                reason, detail = attempt.reason, attempt.detail
                if decision.state is RunState.STOPPED and reason is not Reason.STOPPED:
                    # Stopped after the attempt ended otherwise (a preemption, say): the
                    # run's note is the stop's, since nothing will recover it.
                    reason = Reason.STOPPED
                    detail = f"stop requested; attempt {attempt.n} had ended {attempt.reason.value}"
                    detail += f": {attempt.detail}" if attempt.detail else ""
                return self._finish(run, decision.state, reason, detail, decision.why, attempt)

            def recover(r: RunRecord) -> bool:
                if r.decided >= attempt.n:
                    return False
                r.decided, r.state = attempt.n, RunState.RECOVERING
                r.recoveries += decision.counts_as_recovery
                r.restarts += not decision.counts_as_recovery
                r.offer_index += decision.failover
                r.killed_streak = r.killed_streak + 1 if attempt.reason is Reason.KILLED else 0
                r.not_before = time.time() + decision.delay if decision.delay else None
                r.with_note(attempt.reason, attempt.detail, started=attempt.running_at is not None)
                r.step, r.total = attempt.last_step, attempt.total or r.total
                return True

            run = self.repo.update_run(run.run_id, recover)
            wait = f" in {decision.delay:.0f}s" if decision.delay else ""
            self.repo.add_event(
                run.run_id, "recovering", f"{decision.why}: attempt {attempt.n + 1}{wait}"
            )
        if stop:
            return self._finish(run, RunState.STOPPED, Reason.STOPPED, "stop requested")
        if run.not_before and time.time() < run.not_before:
            return False
        self._name_attempt(run, attempt.n + 1)
        watch.hb_seen, watch.last_status = time.time(), None
        return False

    def _finish(
        self,
        run: RunRecord,
        state: RunState,
        reason: Reason,
        detail: str | None,
        why: str = "",
        attempt: AttemptRecord | None = None,
    ) -> bool:
        def finish(r: RunRecord) -> bool:
            if r.state.terminal:
                return False
            r.state, r.ended_at, r.decided = state, time.time(), r.attempt
            r.with_note(reason, detail, started=attempt is None or attempt.running_at is not None)
            r.why, r.ended_event = why, False
            if attempt is not None:
                r.step, r.total = attempt.last_step, attempt.total or r.total
            return True

        self._say_ended(self.repo.update_run(run.run_id, finish))
        return True

    def _say_ended(self, run: RunRecord) -> None:
        say_ended(self.repo, run)


def say_ended(repo: RunRepo, run: RunRecord) -> None:
    """The run-ended event, then the mark that it was written: an agent that dies in
    between leaves the mark unset, and the next one to look (or a resume) writes it."""
    if run.ended_event or run.reason is None:
        return
    faults.hit("before-run-ended")
    extra = f" ({run.why})" if run.why and run.state is RunState.FAILED else ""
    repo.add_event(
        run.run_id,
        "run-ended",
        f"run {run.state.value.lower()}: {run.note or REASON_NOTES[run.reason]}{extra}",
        state=run.state.value,
    )

    def said(r: RunRecord) -> bool:
        if r.ended_event:
            return False
        r.ended_event = True
        return True

    # The entry's generation before the mark: a resume can only follow the mark, and it
    # rewrites the entry, so the cleanup below never takes a resumed run out of live/.
    entry = live.entry(repo.store, run.run_id)
    ended = repo.update_run(run.run_id, said)
    faults.hit("before-live-cleanup")
    if ended.state.terminal:
        live.ended(
            repo.store,
            run.run_id,
            ended_at=ended.ended_at or time.time(),
            entry_generation=entry.generation if entry else 0,
        )
