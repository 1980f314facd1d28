"""The environment contract inside a job (DESIGN.md §4), written in one place for
every backend: who the attempt is, where the store is, and the runtime's settings.

Secrets travel as references only (``RELAUNCH_RUNTIME.secrets``); the runtime reads
their values inside the job.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from relaunch.runs.records import RunRecord

# What a job's process sees of the environment of the agent that starts it (the local
# backend; a cloud job starts from its image). Not the agent's whole shell: its tokens
# and settings are not the job's. The job's own `env:`, its secrets and the contract
# variables are added on top.
INHERITED = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM"}
    | {"VIRTUAL_ENV", "CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH"}
    # what the runtime needs to reach the store and Google Cloud from inside the job
    | {"GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CONFIG"}
    | {"STORAGE_EMULATOR_HOST", "GCE_METADATA_HOST"}
)
INHERITED_PREFIXES = ("LC_", "RELAUNCH_")


def inherited_environment(run: RunRecord, environ: Mapping[str, str]) -> dict[str, str]:
    """The part of ``environ`` (the agent's) a local job's process starts from: the
    allow-list above, plus the variables its ``env:VAR`` secrets name (read by the
    runtime, which gives the command each one under the secret's declared name)."""
    wanted = {
        ref[len("env:") :] for ref in run.spec.env_from_secret.values() if ref.startswith("env:")
    }
    return {
        name: value
        for name, value in environ.items()
        if name in INHERITED or name in wanted or name.startswith(INHERITED_PREFIXES)
    }


def runtime_settings(run: RunRecord, secrets: dict[str, str] | None = None) -> str:
    """``RELAUNCH_RUNTIME``: the job spec's runtime settings as JSON."""
    spec = run.spec
    return json.dumps(
        {
            "heartbeat_interval": spec.heartbeat_interval,
            "sync_interval": spec.checkpoints.sync_interval,
            "keep": spec.checkpoints.keep,
            "grace_period": spec.grace_period,
            "dir": spec.checkpoints.dir,
            "checkpoints": spec.checkpoints.enabled,
            "fatal_patterns": spec.fatal_patterns,
            "secrets": {**spec.env_from_secret, **(secrets or {})},
        }
    )


def job_environment(
    run: RunRecord,
    attempt: int,
    store_url: str,
    secrets: dict[str, str] | None = None,
    *,
    token: str | None = None,
) -> dict[str, str]:
    """The ``RELAUNCH_*`` variables every attempt's runtime starts from.
    ``RELAUNCH_FENCE`` is the submission's fencing token (see ``AttemptRecord.token``):
    the runtime runs the command only while the attempt record names it."""
    env = {
        "RELAUNCH_RUN_ID": run.run_id,
        "RELAUNCH_ATTEMPT": str(attempt),
        "RELAUNCH_STORE": store_url,
        "RELAUNCH_RUNTIME": runtime_settings(run, secrets),
    }
    if token:
        env["RELAUNCH_FENCE"] = token
    return env


def require_bucket_and_project(
    run: RunRecord, store_url: str, *, who: str, project_hint: str
) -> None:
    """What every cloud backend needs before anything is queued: a store the job can reach
    (a bucket) and a Google Cloud project. ``who`` names what must reach the store."""
    from relaunch.errors import UserInputError

    where = f"run {run.run_id} (backend {run.backend})"
    if not store_url.startswith("gs://"):
        raise UserInputError(
            f"{where}: the store is {store_url}, which {who} cannot reach",
            hint='set [store] url = "gs://BUCKET/PREFIX" in relaunch.toml (or --store)',
        )
    if not run.gcp.get("project"):
        raise UserInputError(f"{where}: no Google Cloud project", hint=project_hint)
