"""`relaunch doctor`: check a project, its store, and a job's settings before it runs.

Each check gives a finding — ok, a warning, or a problem — with what to do. The job
checks carry the seeds' hard-won rule ("the no-heartbeat window must cover the GPU
driver install") into relaunch's two watched phases: ``startup_timeout`` must cover
everything before the first heartbeat (capacity wait, image pull, driver install), and
``stall_timeout`` must leave room for a few missed heartbeats.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from relaunch.backends.vertex.body import STRATEGIES
from relaunch.errors import PreconditionFailed, RelaunchError, credentials_error

if TYPE_CHECKING:
    from relaunch.api import Workspace
    from relaunch.runs.records import RunRecord
    from relaunch.spec.job import JobSpec
    from relaunch.store import ObjectStore

Level = Literal["ok", "warn", "fail"]
SPOT_NOTICE = 30.0  # seconds Compute Engine gives a spot VM between notice and stop


@dataclass(frozen=True)
class Finding:
    level: Level
    what: str
    fix: str = ""


def check_store(ws: Workspace) -> list[Finding]:
    """The store answers, and its create-only writes hold (what leases rely on)."""
    key = f"doctor/{os.getpid()}-{os.urandom(3).hex()}"
    store = ws.store
    missing = _missing_folder(store)
    if missing is not None:
        return [missing]
    try:
        store.put(key, b"probe", if_generation_match=0)
        try:
            store.put(key, b"again", if_generation_match=0)
            cas = Finding(
                "fail",
                f"store {store.url}: a create-only write overwrote an object",
                "use a store that honours generation preconditions (GCS, a local disk)",
            )
        except PreconditionFailed:
            cas = Finding("ok", f"store {store.url}: reachable, create-only writes hold")
        store.delete(key)
    except RelaunchError as e:
        return [Finding("fail", f"store {store.url}: {e.message}", e.hint or "check the URL")]
    except Exception as e:  # google-auth's, raised where the bucket is first touched
        cred = credentials_error(e)
        if cred is None:
            raise
        return [Finding("fail", f"store {store.url}: {cred.message}", cred.hint or "")]
    return [cas]


def _missing_folder(store: ObjectStore) -> Finding | None:
    """A local store that does not exist is not made by a check (the path may be a
    typo): say so, and whether `relaunch run` could make it there."""
    from relaunch.store.local import LocalStore

    if not isinstance(store, LocalStore) or store.root.is_dir():
        return None
    parent = next(p for p in store.root.parents if p.exists())
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        return Finding(
            "fail",
            f"store {store.url} does not exist, and {parent} does not let it be made",
            "choose a writable folder with --store or [store] url",
        )
    return Finding(
        "warn",
        f"store {store.url} does not exist yet (relaunch run makes it)",
        "if runs were queued already, the store URL is wrong: check --store, "
        "$RELAUNCH_STORE and [store] url",
    )


def check_env_secrets(spec: JobSpec) -> Finding | None:
    from relaunch.spec.job import missing_env_secrets

    missing = missing_env_secrets(spec)
    if not missing:
        return None
    return Finding(
        "warn",
        f"secret {', '.join(missing)} is not set here: an agent without it cannot start the job",
        "export the variable in the environment of the agent that runs the job",
    )


def check_agents(ws: Workspace, queue: str) -> Finding:
    from relaunch.agent.loop import live_agents

    try:
        agents = live_agents(ws.store, queue)
    except Exception as e:
        err = e if isinstance(e, RelaunchError) else credentials_error(e)
        if err is None:
            raise
        return Finding("fail", f"cannot list the agents of queue '{queue}': {err.message}")
    if agents:
        return Finding("ok", f"{len(agents)} live agent(s) serve queue '{queue}'")
    return Finding(
        "warn",
        f"no live agent serves queue '{queue}'",
        f"start one (relaunch agent --queue {queue}), or follow a new run with an agent "
        "of its own (relaunch run JOB --follow)",
    )


def check_timing(spec: JobSpec) -> list[Finding]:
    """The two watched phases against the job's own settings."""
    out: list[Finding] = []

    def add(level: Level, what: str, fix: str) -> None:
        out.append(Finding(level, what, fix))

    hb, stall, startup = spec.heartbeat_interval, spec.stall_timeout, spec.startup_timeout
    if stall < 3 * hb:
        add(
            "fail",
            f"stall_timeout {stall:g}s is under 3 heartbeats ({hb:g}s each)",
            f"raise stall_timeout to at least {3 * hb:g}s, or heartbeat more often",
        )
    if startup < max(5.0, hb):
        add(
            "fail",
            f"startup_timeout {startup:g}s ends before an attempt can write its first "
            "heartbeat (starting the runtime and the command takes seconds)",
            f"raise startup_timeout to at least {max(60.0, 3 * hb):g}s (minutes on the cloud)",
        )
    sync = spec.checkpoints.sync_interval
    if spec.checkpoints.enabled and sync > stall:
        add(
            "warn",
            f"checkpoints.sync_interval {sync:g}s is longer than stall_timeout",
            "a stalled attempt loses up to a whole interval of work; sync more often",
        )
    wait = spec.resources.max_wait or spec.vertex.run.max_wait_duration
    strategy = spec.vertex.run.scheduling_strategy or STRATEGIES[spec.resources.provisioning]
    if strategy == "FLEX_START" and wait and startup <= wait:
        add(
            "fail",
            f"startup_timeout {startup:g}s ends before max_wait {wait:g}s: a job still "
            "waiting for capacity would be cancelled",
            f"raise startup_timeout above {wait:g}s plus the image pull",
        )
    gpu = spec.gce.gpu_timeout
    if spec.backend == "gce" and spec.resources.accelerator_type and startup <= gpu:
        # The seeds' rule, in relaunch's terms: the VM's own GPU wait must end (and say
        # why) before the agent gives up on a first heartbeat.
        add(
            "fail",
            f"startup_timeout {startup:g}s ends before gce.gpu_timeout {gpu:g}s: a VM still "
            "waiting for its GPU driver would be cancelled without the start-up script's "
            "diagnosis",
            f"raise startup_timeout above gce.gpu_timeout plus the image pull "
            f"(e.g. {gpu + 300:g}s), or lower gce.gpu_timeout",
        )
    cloud = spec.backend != "local"
    if cloud and startup < 300:
        add(
            "warn",
            f"startup_timeout {startup:g}s leaves little for provisioning, image pull and "
            "GPU driver install (minutes on a cold machine)",
            "10-20 minutes is usual for GPU jobs",
        )
    if cloud and strategy == "SPOT" and spec.grace_period > SPOT_NOTICE:
        add(
            "warn",
            f"grace_period {spec.grace_period:g}s is longer than the ~30 s a spot VM gets "
            "after its preemption notice",
            "save the checkpoint within 30 s of SIGTERM (and report it)",
        )
    if not out:
        what = f"timing: heartbeat {hb:g}s, stall {stall:g}s, startup {startup:g}s"
        out.append(Finding("ok", f"{what}, grace {spec.grace_period:g}s"))
    return out


def check_job(ws: Workspace, path: Path, values: dict[str, str] | None) -> list[Finding]:
    """The job validates, its backend would accept it, its timing is sound."""
    from relaunch.spec.loader import load_job

    try:
        loaded = load_job(path, values)
    except RelaunchError as e:
        return [Finding("fail", e.message, e.hint or "")]
    spec = loaded.spec
    out = [Finding("ok", f"{path}: valid ({spec.backend} backend, queue '{spec.queue}')")]
    out += check_timing(spec)
    secrets = check_env_secrets(spec)
    out += [secrets] if secrets else []
    if spec.backend != "local":
        out += check_cloud(ws, spec)
    else:
        refused = check_backend(ws, _record(ws, spec, path))
        out += refused
        if not refused and spec.checkpoints.enabled and spec.checkpoints.dir:
            out.append(Finding("ok", f"checkpoints.dir {spec.checkpoints.dir}: this run's to use"))
    out.append(check_agents(ws, spec.queue))
    return out


def _record(ws: Workspace, spec: JobSpec, path: Path | None = None) -> RunRecord:
    """The record `relaunch run` would queue for ``spec`` (read from ``path``)."""
    from relaunch.runs.records import RunRecord

    return RunRecord(
        run_id="doctor-check",
        name=spec.name,
        queue=spec.queue,
        backend=spec.backend,
        spec=spec,
        base_dir=str(path.resolve().parent) if path is not None else None,
        job_file=str(path) if path is not None else None,
        gcp=ws.gcp_settings(spec) if spec.backend != "local" else {},
        created_at=time.time(),
    )


def check_backend(ws: Workspace, run: RunRecord) -> list[Finding]:
    """The backend would accept the run (a local job: its command can start here)."""
    from relaunch.backends.registry import get_backend

    try:
        get_backend(run.backend).check(run, ws.store)
    except RelaunchError as e:
        return [Finding("fail", e.message, e.hint or "")]
    return []


def check_cloud(ws: Workspace, spec: JobSpec) -> list[Finding]:
    from relaunch.backends.registry import get_backend

    run = _record(ws, spec)
    refused = check_backend(ws, run)
    if refused:
        return refused
    offers = get_backend(spec.backend).offers(run)
    kind = "zones" if spec.backend == "gce" else "regions"
    places = ", ".join(str(o.get("zone") or o.get("region", "?")) for o in offers)
    return [
        Finding("ok", f"{spec.backend}: project {run.gcp.get('project')}, {kind} {places}"),
        check_credentials(),
    ]


def check_credentials() -> Finding:
    """Application Default Credentials, unless every API points at a local emulator."""
    from relaunch.gcp.endpoints import is_local_emulator, resolve_endpoint

    if all(is_local_emulator(resolve_endpoint(api)) for api in ("aiplatform", "storage")):
        return Finding("ok", "Google Cloud: local emulator endpoints, no credentials needed")
    try:
        import google.auth

        _, project = google.auth.default()
    except Exception as e:  # DefaultCredentialsError, or the library missing
        return Finding(
            "fail",
            f"no Google Cloud credentials: {str(e).splitlines()[0][:160]}",
            "run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS",
        )
    return Finding("ok", f"Google Cloud credentials found (project {project or 'not set'})")
