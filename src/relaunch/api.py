"""The Python API: everything the CLI does, as plain calls.

from relaunch import api
ws = api.Workspace.open()                      # relaunch.toml + its store
run_id = ws.submit("examples/quickstart/job.yaml")
ws.wait(run_id)                                # runs an agent in-process if none is live
print(ws.status(run_id).run.state)
ws.resume(run_id, "examples/quickstart/job.yaml")  # once it ended: on from its checkpoint
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from relaunch.errors import (
    DamagedRecord,
    NotFoundError,
    SpecError,
    UserInputError,
)
from relaunch.runs import keys, leases
from relaunch.runs.summary import RunSummary, run_summaries
from relaunch.spec.loader import load_project, store_url
from relaunch.spec.project import ProjectConfig
from relaunch.states import Reason, RunState
from relaunch.store import ObjectStore, open_store

if TYPE_CHECKING:  # the records import pydantic models of the whole job spec
    from relaunch.runs.records import AttemptRecord, Event, Heartbeat, RunRecord
    from relaunch.runs.repo import RunRepo
    from relaunch.runs.resume import Resumed
    from relaunch.spec.job import JobSpec
    from relaunch.stopping import StopOutcome


def new_run_id(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not slug or not slug[0].isalpha():
        slug = "run-" + slug
    return f"{slug[:48].rstrip('-')}-{os.urandom(3).hex()}"


@dataclass
class RunStatus:
    run: RunRecord
    attempts: list[AttemptRecord]
    heartbeat: Heartbeat | None
    events: list[Event]


class Workspace:
    """A project config and the store it names."""

    def __init__(self, config: ProjectConfig, store: ObjectStore) -> None:
        self.config = config
        self.store = store

    @cached_property
    def repo(self) -> RunRepo:
        from relaunch.runs.repo import RunRepo

        return RunRepo(self.store)

    @classmethod
    def open(
        cls, *, project: Path | None = None, store: str | None = None, start: Path | None = None
    ) -> Workspace:
        config = load_project(project, start=start)
        return cls(config, open_store(store_url(config, store)))

    # -- submitting ---------------------------------------------------------------------

    def submit(
        self,
        job: Path | str,
        values: dict[str, str] | None = None,
        *,
        queue_name: str | None = None,
        run_id: str | None = None,
        on_image: Callable[[str], None] | None = None,
    ) -> str:
        """Validate ``job`` and queue it; return the run id. Nothing is written on error.
        A stack image the registry lacks is built (after the checks); ``on_image`` gets a
        line per image built."""
        return self.submit_run(
            job, values, queue_name=queue_name, run_id=run_id, on_image=on_image
        ).run_id

    def submit_run(
        self,
        job: Path | str,
        values: dict[str, str] | None = None,
        *,
        queue_name: str | None = None,
        run_id: str | None = None,
        on_image: Callable[[str], None] | None = None,
    ) -> RunRecord:
        """``submit``, returning the record as queued (no second read of the store)."""
        from relaunch.runs import queue

        record = self._validated(job, values, queue_name=queue_name, run_id=run_id)
        self._resolve_image(record, on_image)
        queue.enqueue(self.store, record)
        self.repo.add_event(
            record.run_id, "queued", f"queued on '{record.queue}' from {record.job_file}"
        )
        return record

    def resume(
        self,
        run_id: str,
        job: Path | str | None = None,
        values: dict[str, str] | None = None,
        *,
        from_scratch: bool = False,
        by: str | None = None,
        on_image: Callable[[str], None] | None = None,
    ) -> Resumed:
        """Queue the ended run ``run_id`` again under its id: attempt numbers go on, the
        next attempt restores its last committed checkpoint (``from_scratch``: step 0,
        the checkpoint discarded), ``WANDB_RUN_ID`` stays the same. ``job`` (and/or
        ``values``, which alone re-read the run's own job file with its earlier values)
        replace the spec, validated as ``submit`` validates; without them the recorded
        spec is reused. Refused, before anything is written, when the run has not ended,
        has no committed checkpoint (unless ``from_scratch``) or does not exist."""
        from relaunch.runs import resume

        run, _ = resume.ended_run(self.repo, keys.valid_run_id(run_id))
        new = None
        if job is not None or values:
            if job is None:  # --set alone: the run's own job file, with its earlier values
                job, values = resume.job_file_of(run), {**run.template_values, **(values or {})}
            new = self._validated(job, values, run_id=run_id)
        else:  # the recorded spec: still one its backend accepts here?
            from relaunch.backends.registry import get_backend

            get_backend(run.backend).check(run, self.store)
        resume.check(self.repo, run, new, from_scratch=from_scratch)  # before any build
        if new is not None:
            self._resolve_image(new, on_image)
        return resume.resume(self.repo, run_id, new, from_scratch=from_scratch, by=by)

    def _validated(
        self,
        job: Path | str,
        values: dict[str, str] | None,
        *,
        queue_name: str | None = None,
        run_id: str | None = None,
    ) -> RunRecord:
        """The run record ``job`` makes, checked as far as anything can be before its
        image is resolved: what `relaunch run` and `relaunch resume` both accept."""
        from relaunch.backends.registry import BACKENDS, get_backend
        from relaunch.runs.records import RunRecord
        from relaunch.spec.loader import load_job

        loaded = load_job(Path(job), values)
        spec = loaded.spec
        if spec.backend not in BACKENDS:
            raise UserInputError(
                f"{loaded.source}: backend '{spec.backend}' is not available in this version",
                hint=f"use one of: {', '.join(sorted(BACKENDS))}",
            )
        if queue_name is not None:  # an empty --queue is a mistake, not the default
            spec.queue = keys.valid_queue(queue_name)
        # An empty --run-id is a mistake to name, not a request for a generated id.
        chosen = run_id if run_id is not None else spec.run_id
        rid = keys.valid_run_id(chosen if chosen is not None else new_run_id(spec.name))
        from relaunch.doctor import check_timing

        # What `relaunch doctor` calls a problem (✘) is never queued.
        for finding in check_timing(spec):
            if finding.level == "fail":
                raise SpecError(f"{loaded.source}: {finding.what}", hint=finding.fix)
        if spec.backend == "local":
            workdir = loaded.base_dir / (spec.workdir or ".")
            if not workdir.is_dir():
                raise UserInputError(
                    f"{loaded.source}: workdir {workdir} does not exist",
                    hint="workdir is relative to the job file's folder",
                )
        record = RunRecord(
            run_id=rid,
            name=spec.name,
            queue=spec.queue,
            priority=spec.priority,
            backend=spec.backend,
            spec=spec,
            base_dir=str(loaded.base_dir),
            project={"name": self.config.project.name, "entity": self.config.project.entity},
            gcp=self.gcp_settings(spec) if spec.backend != "local" else {},
            job_file=str(loaded.source),
            template_values=dict(values or {}),
        )
        get_backend(spec.backend).check(record, self.store)
        return record

    def _resolve_image(self, record: RunRecord, on_image: Callable[[str], None] | None) -> None:
        spec = record.spec
        if spec.image and spec.backend != "local":
            # Only a run its backend accepts may start builds (hours for a base image).
            # A stack image name becomes the URI of its current tag, built (parents
            # first) when the registry does not have it: never a stale image.
            from relaunch.images import resolve_image

            record.image_uri = resolve_image(
                self.config, spec.image, build_missing=True, on_build=on_image
            )

    def gcp_settings(self, spec: JobSpec) -> dict[str, object]:
        """What a cloud run needs of relaunch.toml, recorded so any agent can start it."""
        gcp = self.config.gcp
        queue_spec = spec.vertex.spec
        project = (
            spec.vertex.project
            or (queue_spec.project if queue_spec else None)
            or gcp.project
            or os.environ.get("GOOGLE_CLOUD_PROJECT")
            or os.environ.get("CLOUDSDK_CORE_PROJECT")
        )
        return {
            "project": project,
            "region": gcp.region,
            "staging_bucket": gcp.staging_bucket,
            "service_account": gcp.service_account,
            "endpoints": dict(gcp.endpoints),
        }

    # -- reading ------------------------------------------------------------------------

    def summaries(self, *, recent: float | None = None) -> list[RunSummary]:
        """Every run (with ``recent``: those not over, and those ended in the last
        ``recent`` seconds), newest first, read without validating specs (fast listings)."""
        return run_summaries(self.store, recent=recent)

    def runs(self, include_ended: bool = True) -> list[RunRecord]:
        runs = [r for r in self.repo.runs() if include_ended or not r.state.terminal]
        return sorted(runs, key=lambda r: r.created_at, reverse=True)

    def status(self, run_id: str, *, events_since: float | None = None) -> RunStatus:
        run = self.repo.get_run(keys.valid_run_id(run_id))
        hb = self.repo.heartbeat(run_id)
        return RunStatus(
            run,
            self.repo.attempts(run_id, run.attempt),
            hb[0] if hb else None,
            self.repo.events(run_id, events_since, damaged=True),
        )

    def events(self, run_id: str, *, since: float | None = None) -> list[Event]:
        """The run's events; readable even when its record is damaged. An event object
        that cannot be read is in its place, as a ``damaged-event`` saying why."""
        evs = self.repo.events(keys.valid_run_id(run_id), since, damaged=True)
        if not evs and self.store.stat(keys.run_key(run_id)) is None:
            self.repo.get_run(run_id)  # the one-line "no run" error
        return evs

    def logs(
        self,
        run_id: str,
        attempt: int | None = None,
        *,
        cloud: bool = False,
        on_unreadable: Callable[[str], None] | None = None,
    ) -> bytes:
        """An attempt's output as the runtime shipped it to the store; with ``cloud``, or
        when the runtime shipped nothing (the container never started), the platform's
        own log of it (Cloud Logging for Vertex AI; on the local backend the runtime's
        raw output until its scratch folder is removed, then the shipped log). A run
        whose record cannot be read
        (damaged, or gone) still shows the logs the store holds: ``on_unreadable`` is
        told why in a line first."""
        try:
            run = self.repo.get_run(keys.valid_run_id(run_id))
        except (DamagedRecord, NotFoundError) as e:  # NotFoundError: no record at all
            from relaunch.runs import salvage

            n = salvage.log_attempt(self.repo, run_id, attempt, e, cloud=cloud)
            if on_unreadable is not None:
                why = salvage.why_unreadable(run_id, e)
                on_unreadable(f"{why}: showing attempt {n}'s log from the store")
            return self.repo.log(run_id, n)
        n = attempt if attempt is not None else run.attempt
        if run.attempt < 1:
            from relaunch.agent.loop import live_agents

            served = bool(live_agents(self.store, run.queue))
            raise NotFoundError(
                f"run {run_id} is {run.state.value} and has no output: no attempt has started",
                hint=f"relaunch logs {run_id} -f waits for it"
                if served
                else f"no agent serves queue '{run.queue}': start one "
                f"(relaunch agent --queue {run.queue})",
            )
        if n < 1 or n > max(run.attempt, 0):
            raise NotFoundError(
                f"run {run_id} has no attempt {n}",
                hint=f"it has attempts 1..{run.attempt}"
                if run.attempt
                else "it has not started yet",
            )
        data = b"" if cloud else self.repo.log(run_id, n)
        if data or (run.backend == "local" and not cloud):
            return data
        found = self.repo.find_attempt(run_id, n)
        handle = found[0].handle if found else None
        if not handle:
            return data
        from relaunch.backends.registry import get_backend

        text = "".join(f"{line}\n" for line in get_backend(run.backend).logs(handle)).encode()
        if not text and run.backend == "local":
            # A local attempt's raw output goes with its scratch folder once the runtime
            # shipped everything: the shipped log is then the whole of it.
            return self.repo.log(run_id, n)
        return text

    # -- control ------------------------------------------------------------------------

    def stop(self, run_id: str, *, wait: float = 60.0) -> RunState:
        """Stop the run; its state after at most ``wait`` seconds (``stop_run``)."""
        return self.stop_run(run_id, wait=wait).state

    def stop_run(self, run_id: str, *, wait: float = 60.0) -> StopOutcome:
        """Write ``.stop`` and wait up to ``wait`` seconds for the run to end: a queued
        run ends at once, a running one when its attempt has been cancelled — by the
        agent that holds it, or by an agent for it in this process while none holds it
        (none serves it, or its agent's lease ran out). Not ended in time: the outcome
        says who holds it and why (``pending``). An ended run gets the marker too, so a
        resume racing this stop cannot outlive it."""
        from relaunch.stopping import stop_run

        return stop_run(self, run_id, wait)

    def preempt(self, run_id: str, notice: float = 5.0) -> None:
        """Ask the run's agent to stage a spot preemption of its current attempt."""
        run = self.repo.get_run(keys.valid_run_id(run_id))
        if run.backend != "local":
            raise UserInputError(
                f"run {run_id} runs on {run.backend}; preempt simulates "
                "preemption on the local backend only",
                hint="on Google Cloud, preemption is the cloud's to make",
            )
        if run.state not in (RunState.RUNNING, RunState.STARTING):
            raise UserInputError(
                f"run {run_id} is {run.state.value}, not running",
                hint="preempt a run while it runs (relaunch ps)",
            )
        owner = leases.read_lease(self.store, run_id)
        if not leases.is_held(self.store, owner):
            raise UserInputError(
                f"no agent is looking after run {run_id}", hint="start one with `relaunch agent`"
            )
        body = {"notice": notice, "requested_at": time.time()}
        self.store.put(keys.preempt_key(run_id), json.dumps(body).encode())

    # -- waiting --------------------------------------------------------------------------

    def wait(
        self,
        run_id: str,
        *,
        on_change: Callable[[RunStatus], None] | None = None,
        interval: float | None = None,
        timeout: float | None = None,
    ) -> RunRecord:
        """Wait for the run to end, running an agent for it in this process while no live
        agent serves its queue. ``on_change`` sees every new status, read every
        ``interval`` seconds (default 0.2 s on a local store, 2 s on a bucket)."""
        from relaunch.waiting import wait_for_run

        return wait_for_run(self, run_id, on_change=on_change, interval=interval, timeout=timeout)


def exit_code_of(run: RunRecord | RunSummary) -> int:
    """`relaunch run --follow` exits 0 on success, 1 on failure, 3 when stopped."""
    state = run.state.value if isinstance(run.state, RunState) else str(run.state)
    return {"SUCCEEDED": 0, "STOPPED": 3}.get(state, 1)


__all__ = [
    "Reason",
    "RunState",
    "RunStatus",
    "RunSummary",
    "Workspace",
    "exit_code_of",
    "new_run_id",
]
