"""The environment contract inside a job (DESIGN.md §4), written in one place for
every backend: who the attempt is, where the store is, and the runtime's settings.

Secrets travel as references only (``RELAUNCH_RUNTIME.secrets``); the runtime reads
their values inside the job.
"""

from __future__ import annotations

import json

from relaunch.runs.records import RunRecord


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
