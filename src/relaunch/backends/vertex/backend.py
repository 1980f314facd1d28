"""The Vertex AI backend: each attempt is one CustomJob.

Jobs carry the labels ``relaunch-run-id`` and ``relaunch-attempt``, so an agent that
died between creating a job and recording it is replaced by one that finds the job by
label instead of creating a second. Transient API errors (429, 5xx) are retried with
backoff by the client's retry policy; what remains is classified (DESIGN.md §3).

The client is google-cloud-aiplatform's ``aiplatform_v1.JobServiceClient`` over REST,
one per region (Vertex endpoints are regional), imported only when a Vertex run is
reconciled.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from relaunch.backends.base import AttemptStatus, Backend, Handle, Placement, SubmitContext
from relaunch.backends.contract import require_bucket_and_project
from relaunch.backends.vertex.body import ATTEMPT_LABEL, RUN_LABEL, BodyBuilder
from relaunch.errors import BackendError, SpecError, UserInputError
from relaunch.gcp.errors import backend_error
from relaunch.runs.records import AttemptRecord, RunRecord
from relaunch.spec.templates import KNOWN_MACROS
from relaunch.states import AttemptState, Reason
from relaunch.store.base import ObjectStore

#: seconds between two reads of one job (~360 API calls per job-hour), unless
#: RELAUNCH_VERTEX_POLL_INTERVAL says otherwise; a runtime that exits makes the agent
#: read the job at once (its last heartbeat says "exited")
POLL_INTERVAL = 10.0
#: waits between tries of a create refused with 429/5xx
CREATE_RETRY_DELAYS = (1.0, 2.0, 4.0)


def regions(run: RunRecord) -> list[str]:
    """Where the run may go, in order: resources.regions, the queue config's location,
    then [gcp] region of relaunch.toml (recorded when the run was queued)."""
    spec = run.spec
    if spec.resources.regions:
        return list(spec.resources.regions)
    location = spec.vertex.spec.location if spec.vertex.spec else None
    region = location or run.gcp.get("region")
    return [str(region)] if region else []


# Names of aiplatform_v1's AcceleratorType and Scheduling.Strategy (a test checks that
# the installed library still has each). A body whose enums are all among them converts
# to a CustomJob, so `relaunch run` checks it without importing google-cloud-aiplatform
# (seconds of CPU); any other name goes through the library, which has the last word.
KNOWN_ACCELERATORS = frozenset(
    {
        "ACCELERATOR_TYPE_UNSPECIFIED",
        *("NVIDIA_TESLA_K80", "NVIDIA_TESLA_P100", "NVIDIA_TESLA_V100", "NVIDIA_TESLA_P4"),
        *("NVIDIA_TESLA_T4", "NVIDIA_TESLA_A100", "NVIDIA_A100_80GB", "NVIDIA_L4"),
        *("NVIDIA_H100_80GB", "NVIDIA_H100_MEGA_80GB", "NVIDIA_H200_141GB", "NVIDIA_B200"),
        *("NVIDIA_GB200", "NVIDIA_RTX_PRO_6000"),
        *("TPU_V2", "TPU_V3", "TPU_V4_POD", "TPU_V5_LITEPOD"),
    }
)
KNOWN_STRATEGIES = frozenset({"ON_DEMAND", "LOW_COST", "STANDARD", "SPOT", "FLEX_START"})


def known_enums_only(mapping: dict[str, Any]) -> bool:
    """Whether every enum value of a CustomJob mapping (``BodyBuilder.build``) is a name
    the library is known to accept."""
    spec = mapping["job_spec"]
    return spec["scheduling"]["strategy"] in KNOWN_STRATEGIES and all(
        pool["machine_spec"]["accelerator_type"] in KNOWN_ACCELERATORS
        for pool in spec["worker_pool_specs"]
    )


def custom_job(mapping: dict[str, Any]) -> Any:
    """``mapping`` as an ``aiplatform_v1.CustomJob`` (SpecError on a name Vertex lacks)."""
    from google.cloud import aiplatform_v1

    try:
        return aiplatform_v1.CustomJob(mapping)
    except KeyError as e:  # an enum name Vertex does not have
        raise SpecError(
            f"vertex: {e.args[0]!r} is not a value Vertex AI accepts there",
            hint="check accelerator_type / scheduling_strategy against Google's list",
        ) from None


class VertexBackend(Backend):
    name = "vertex"
    poll_interval = POLL_INTERVAL
    thread_safe = True  # its clients are thread-safe

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}
        self.poll_interval = float(os.environ.get("RELAUNCH_VERTEX_POLL_INTERVAL") or POLL_INTERVAL)

    def client(self, region: str, endpoints: dict[str, str] | None = None) -> Any:
        if region not in self._clients:
            from relaunch.gcp.clients import vertex_job_client

            self._clients[region] = vertex_job_client(region, endpoints)
        return self._clients[region]

    def check(self, run: RunRecord, store: ObjectStore) -> None:
        where = f"run {run.run_id} (backend vertex)"
        require_bucket_and_project(
            run,
            store.url,
            who="a job in the cloud",
            project_hint="set [gcp] project in relaunch.toml, vertex.project, "
            "or GOOGLE_CLOUD_PROJECT",
        )
        places = regions(run)
        if not places:
            raise UserInputError(
                f"{where}: no region", hint="set resources.regions or [gcp] region in relaunch.toml"
            )
        # Build every body now, so a value Vertex would refuse fails here, not in the agent.
        macros = dict.fromkeys(KNOWN_MACROS, "x")
        for region in places:
            ctx = SubmitContext(store=store, command=run.spec.argv, macros=macros)
            ctx.image_uri = run.image_uri or run.spec.image
            mapping = BodyBuilder(run, 1, region, ctx).build()
            if not known_enums_only(mapping):
                custom_job(mapping)

    def offers(self, run: RunRecord) -> list[Placement]:
        return [{"region": r} for r in regions(run)] or [{}]

    def place_key(self, run: RunRecord, placement: Placement) -> str:
        spec = run.spec
        if spec.vertex.spec:
            machine = spec.vertex.spec.worker_pool_specs[0].machine_spec
            kind = f"{machine.machine_type}/{machine.accelerator_type}"
        else:
            kind = f"{spec.resources.machine_type}/{spec.resources.accelerator_type or '-'}"
        region = placement.get("region")
        return f"vertex/{region}/{kind}" if region else ""

    def body(self, run: RunRecord, n: int, region: str, ctx: SubmitContext) -> Any:
        """The ``aiplatform_v1.CustomJob`` of attempt ``n`` (raises SpecError on a value
        Vertex would refuse, e.g. an unknown accelerator type)."""
        return custom_job(BodyBuilder(run, n, region, ctx).build())

    def submit(self, run: RunRecord, attempt: AttemptRecord, ctx: SubmitContext) -> Handle:
        region = str(ctx.placement.get("region") or "")
        project = str(run.gcp.get("project") or "")
        if not region or not project:
            raise BackendError(
                f"no Google Cloud {'region' if project else 'project'} for run {run.run_id}",
                reason=Reason.USER_ERROR.value,
                hint="set [gcp] project and region in relaunch.toml, or resources.regions",
            )
        job = self.body(run, attempt.n, region, ctx)
        client = self.client(region, run.gcp.get("endpoints"))
        parent = f"projects/{project}/locations/{region}"
        for delay in (*CREATE_RETRY_DELAYS, None):
            try:
                created = client.create_custom_job(
                    parent=parent,
                    custom_job=job,
                    timeout=run.spec.vertex.run.create_request_timeout or None,
                )
                return self._handle(created.name, region)
            except Exception as e:  # google.api_core errors and transport failures alike
                err = backend_error(e, f"creating the CustomJob in {region}")
                if err.reason != Reason.TRANSIENT.value or delay is None:
                    raise err from None
            # The create may have landed and only its answer been lost: look before
            # creating again, so one attempt never becomes two jobs.
            time.sleep(delay)
            found = self.find(run, attempt.model_copy(update={"placement": ctx.placement}))
            if found is not None:
                return found
        raise AssertionError("unreachable")

    @staticmethod
    def _handle(name: str, region: str) -> Handle:
        return {"name": name, "region": region, "where": region}

    def poll(self, handle: Handle) -> AttemptStatus:
        from google.api_core import exceptions as gexc

        from relaunch.backends.vertex.states import attempt_status

        try:
            job = self.client(handle["region"]).get_custom_job(name=handle["name"])
        except gexc.NotFound:
            return AttemptStatus(
                AttemptState.ENDED, detail=f"the CustomJob {handle['name']} no longer exists"
            )
        except Exception as e:
            err = backend_error(e, "reading the CustomJob")
            raise BackendError(err.message, reason=Reason.TRANSIENT.value, hint=err.hint) from e
        return attempt_status(job)

    def cancel(self, handle: Handle, grace: float) -> None:
        # Vertex gives the containers SIGTERM and its own grace period; cancelling again
        # after ours is over is harmless (an ending job answers FAILED_PRECONDITION).
        from google.api_core import exceptions as gexc

        try:
            self.client(handle["region"]).cancel_custom_job(name=handle["name"])
        except (gexc.NotFound, gexc.FailedPrecondition, gexc.BadRequest):
            pass
        except Exception as e:
            raise backend_error(e, "cancelling the CustomJob") from None

    def find(self, run: RunRecord, attempt: AttemptRecord) -> Handle | None:
        region = attempt.placement.get("region")
        project = run.gcp.get("project")
        if not region or not project:
            return None
        flt = f'labels.{RUN_LABEL}="{run.run_id}" AND labels.{ATTEMPT_LABEL}="{attempt.n}"'
        try:
            jobs = self.client(str(region)).list_custom_jobs(
                request={"parent": f"projects/{project}/locations/{region}", "filter": flt}
            )
            found = next(iter(jobs), None)
        except Exception as e:
            raise backend_error(e, "looking for the attempt's CustomJob") from None
        return self._handle(found.name, str(region)) if found is not None else None

    def logs(self, handle: Handle) -> Iterator[str]:
        """The job's output from Cloud Logging (every replica's, oldest first)."""
        from relaunch.gcp.clients import logging_client

        project, job_id = handle["name"].split("/")[1], handle["name"].rsplit("/", 1)[-1]
        flt = f'resource.type="ml_job" AND resource.labels.job_id="{job_id}"'
        try:
            for entry in logging_client(project).list_entries(filter_=flt, page_size=1000):
                payload = entry.payload
                if isinstance(payload, dict):
                    payload = payload.get("message", payload)
                yield str(payload)
        except Exception as e:
            raise backend_error(e, "reading the job's Cloud Logging entries") from None
