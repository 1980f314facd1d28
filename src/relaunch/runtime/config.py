"""The runtime's configuration: the environment contract a backend sets (DESIGN.md §4).

Standard library only.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relaunch.errors import RelaunchError
from relaunch.runs import keys


def is_leader(env: dict[str, str] | os._Environ[str]) -> bool:
    """Whether this replica writes heartbeats, checkpoints and the result. In a
    multi-replica Vertex job (``CLUSTER_SPEC``) only replica 0 of worker pool 0 does;
    the others restore the checkpoint and run the command."""
    try:
        task = json.loads(env.get("CLUSTER_SPEC") or "{}").get("task") or {}
    except ValueError:
        return True
    return task.get("type", "workerpool0") == "workerpool0" and int(task.get("index", 0)) == 0


@dataclass
class RuntimeConfig:
    run_id: str
    attempt: int
    store_url: str
    checkpoint_dir: Path
    scratch: Path
    heartbeat_interval: float = 10.0
    sync_interval: float = 30.0
    keep: int = 2
    grace_period: float = 25.0
    checkpoints: bool = True
    fatal_patterns: list[str] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)  # NAME → reference, never values
    token: str | None = None  # RELAUNCH_FENCE: the submission this runtime belongs to
    scratch_made_here: bool = False  # no RELAUNCH_SCRATCH: the runtime made (and removes) it
    job_dir: bool = False  # the checkpoint folder is the job's own checkpoints.dir

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ[str] = os.environ) -> RuntimeConfig:
        missing = [
            v for v in ("RELAUNCH_RUN_ID", "RELAUNCH_ATTEMPT", "RELAUNCH_STORE") if not env.get(v)
        ]
        if missing:
            raise RelaunchError(
                f"relaunch-runtime: {', '.join(missing)} not set",
                hint="the runtime runs inside a job started by relaunch",
            )
        keys.valid_run_id(env["RELAUNCH_RUN_ID"])
        settings: dict[str, Any] = json.loads(env.get("RELAUNCH_RUNTIME") or "{}")
        given = env.get("RELAUNCH_SCRATCH")
        scratch = Path(given or tempfile.mkdtemp(prefix="relaunch-"))  # mode 0700
        # The job's own checkpoint folder (checkpoints.dir) wins over the default one.
        fixed = settings.pop("dir", None)
        ckpt = Path(fixed or env.get("RELAUNCH_CHECKPOINT_DIR") or scratch / "checkpoints")
        return cls(
            run_id=env["RELAUNCH_RUN_ID"],
            attempt=int(env["RELAUNCH_ATTEMPT"]),
            store_url=env["RELAUNCH_STORE"],
            checkpoint_dir=ckpt,
            scratch=scratch,
            token=env.get("RELAUNCH_FENCE") or None,
            scratch_made_here=not given,
            job_dir=bool(fixed),
            **settings,
        )
