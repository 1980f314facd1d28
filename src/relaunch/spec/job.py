"""The job spec: what one job.yaml says (after templates are filled in)."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from relaunch.runs.keys import RUN_ID_RE
from relaunch.spec.common import (
    Duration,
    Strict,
    check_env_name_free,
    check_labels,
    check_region,
    check_zone,
)
from relaunch.spec.namerules import check_name
from relaunch.spec.sections import LazySection, given, install_lazy_sections, lazy_section
from relaunch.states import DEFAULT_ACTIONS, Action, Reason

if TYPE_CHECKING:
    from relaunch.spec.gce import GceOptions
    from relaunch.spec.vertex import VertexOptions
else:  # imported and built only for a job that has the section (spec/sections.py)
    VertexOptions = Annotated[Any, LazySection("relaunch.spec.vertex:VertexOptions")]
    GceOptions = Annotated[Any, LazySection("relaunch.spec.gce:GceOptions")]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_QUEUE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_SECRET_REF = re.compile(r"^projects/[^/]+/secrets/[^/]+(/versions/[^/]+)?$|^env:[A-Za-z_]\w*$")


def _scalar_text(x: object) -> object:
    """YAML numbers in argv/env become the text the user wrote (``32`` → ``"32"``)."""
    if isinstance(x, bool):
        return str(x).lower()
    return str(x) if isinstance(x, (int, float)) else x


Provisioning = Literal["spot", "flex-start", "standard"]


class Resources(Strict):
    """Where and on what the job runs. The local backend reads none of it."""

    machine_type: str | None = Field(None, description="e.g. n1-standard-8, g2-standard-4")
    accelerator_type: str | None = Field(None, description="e.g. NVIDIA_L4, NVIDIA_TESLA_T4")
    accelerator_count: int = Field(0, ge=0, le=16)
    replica_count: int = Field(1, ge=1)
    boot_disk_gb: int | None = Field(None, ge=10, le=65536)
    provisioning: Provisioning = Field("spot", description="spot | flex-start | standard")
    max_wait: Duration | None = Field(None, description="flex-start: longest wait for capacity")
    regions: list[str] = Field(default_factory=list, description="tried in order on failover")
    zones: list[str] = Field(default_factory=list)

    @field_validator("regions")
    @classmethod
    def _regions(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("a region is listed twice")
        return [check_region(r) for r in v]


class RetryPolicy(Strict):
    """How a run recovers. ``actions`` overrides the action for a reason."""

    max_recoveries: int = Field(20, ge=0, description="attempts lost to the cloud (preemption…)")
    max_restarts_on_errors: int = Field(
        0, ge=0, description="attempts lost to errors (user-error, stalled…) that are retried"
    )
    actions: dict[Reason, Action] = Field(default_factory=dict, description="reason → action")
    backoff: Duration = Field(5.0, description="first delay of the 'backoff' action (doubles)")
    backoff_max: Duration = 300.0

    def action_for(self, reason: Reason) -> Action:
        return self.actions.get(reason, DEFAULT_ACTIONS.get(reason, Action.FAIL))


class Checkpoints(Strict):
    """What the runtime does with ``$RELAUNCH_CHECKPOINT_DIR``."""

    enabled: bool = True
    sync_interval: Duration = Field(
        30.0, description="scan the dir for finished files this often (0 = only on report/exit)"
    )
    keep: int = Field(2, ge=1, description="committed checkpoints kept in the store")
    dir: str | None = Field(
        None,
        description="the folder the trainer already writes checkpoints to (e.g. where its "
        "last.pt goes): restored into and committed from; default: a fresh folder, given "
        "to the trainer as $RELAUNCH_CHECKPOINT_DIR. Relative to the working directory",
    )


class LocalPreemption(Strict):
    """A simulated spot preemption the agent performs on a local run (for demos/tests)."""

    attempt: int = Field(1, ge=1)
    at_step: int | None = Field(None, ge=0)
    after: Duration | None = None
    notice: Duration = 5.0

    @model_validator(mode="after")
    def _one_trigger(self) -> LocalPreemption:
        if (self.at_step is None) == (self.after is None):
            raise ValueError("give exactly one of at_step or after")
        return self


class LocalOptions(Strict):
    preempt: list[LocalPreemption] = Field(default_factory=list)


class JobSpec(Strict):
    """One training job. Field docs feed `relaunch schema`."""

    name: str = Field(..., min_length=1, max_length=128)
    backend: Literal["local", "vertex", "gce"] = "local"
    queue: str = "default"
    priority: int = Field(0, ge=0, le=9, description="0 runs first")
    run_id: str | None = Field(None, description="fixed run id (default: generated)")
    image: str | None = Field(None, description="an image of the stack or a full image URI")
    command: list[str] = Field(
        default_factory=list, description="required, unless every vertex worker pool has one"
    )
    args: list[str] = Field(default_factory=list, description="appended to command")
    workdir: str | None = Field(None, description="local backend: relative to job.yaml's folder")
    env: dict[str, str] = Field(default_factory=dict)
    env_from_secret: dict[str, str] = Field(
        default_factory=dict,
        description="NAME: projects/P/secrets/S[/versions/V] or env:VAR of the agent; "
        "the value never enters a stored record",
    )
    resources: Resources = Field(default_factory=Resources)  # type: ignore[arg-type]
    retry: RetryPolicy = Field(default_factory=RetryPolicy)  # type: ignore[arg-type]
    startup_timeout: Duration = Field(600.0, description="submission → first heartbeat")
    stall_timeout: Duration = Field(300.0, description="longest heartbeat silence when running")
    heartbeat_interval: Duration = Field(10.0, gt=0)
    grace_period: Duration = Field(25.0, description="SIGTERM → SIGKILL on stop")
    checkpoints: Checkpoints = Field(default_factory=Checkpoints)  # type: ignore[arg-type]
    fatal_patterns: list[str] = Field(
        default_factory=list, description="extra regexes in output that fail the attempt"
    )
    labels: dict[str, str] = Field(default_factory=dict, description="cloud resource labels")
    local: LocalOptions = Field(default_factory=LocalOptions)
    vertex: VertexOptions = lazy_section()
    gce: GceOptions = lazy_section()

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return check_labels(v)

    @model_validator(mode="after")
    def _backend_needs(self) -> JobSpec:
        if self.backend == "local" and self.image:
            raise ValueError(
                "image: the local backend runs the command on this machine and would ignore "
                "the image; remove image:, or use a cloud backend (backend: vertex)"
            )
        vertex: VertexOptions | None = given(self, "vertex")  # a local job: not built
        pools = vertex.spec.worker_pool_specs if vertex and vertex.spec else []
        if not self.command and (self.backend != "vertex" or not pools):
            raise ValueError("command is required: the training command, e.g. [python, train.py]")
        if not self.command and not all(p.container_spec.command for p in pools):
            raise ValueError("command is required (a worker pool has no container_spec.command)")
        if self.backend == "gce":
            return self._gce_needs()
        if self.backend != "vertex":
            return self
        if not pools and not self.resources.machine_type:
            raise ValueError(
                "backend vertex needs resources.machine_type or a queue config "
                "(vertex.spec.worker_pool_specs)"
            )
        if not self.image and not (pools and all(p.container_spec.image_uri for p in pools)):
            raise ValueError("backend vertex needs image: (a stack image or a full image URI)")
        env_refs = [n for n, ref in self.env_from_secret.items() if ref.startswith("env:")]
        if env_refs:
            raise ValueError(
                f"env_from_secret {env_refs[0]}: env:VAR secrets exist only where the agent "
                "runs; on vertex use a Secret Manager reference projects/P/secrets/S"
            )
        return self

    def _gce_needs(self) -> JobSpec:
        if not self.resources.machine_type:
            raise ValueError("backend gce needs resources.machine_type (e.g. n1-standard-4)")
        if not self.image:
            raise ValueError("backend gce needs image: (a stack image or a full image URI)")
        for zone in self.resources.zones:
            check_zone(zone)
        if len(set(self.resources.zones)) != len(self.resources.zones):
            raise ValueError("a zone is listed twice")
        if self.resources.provisioning == "flex-start":
            raise ValueError("backend gce takes provisioning spot or standard")
        if self.resources.replica_count != 1:
            raise ValueError("backend gce runs one VM per attempt (replica_count 1)")
        env_refs = [n for n, ref in self.env_from_secret.items() if ref.startswith("env:")]
        if env_refs:
            raise ValueError(
                f"env_from_secret {env_refs[0]}: env:VAR secrets exist only where the agent "
                "runs; on gce use a Secret Manager reference projects/P/secrets/S"
            )
        return self

    @field_validator("command", "args", mode="before")
    @classmethod
    def _split_command(cls, v: object) -> object:
        if isinstance(v, str):
            return shlex.split(v)
        return [_scalar_text(x) for x in v] if isinstance(v, list) else v

    @field_validator("env", mode="before")
    @classmethod
    def _env_text(cls, v: object) -> object:
        return {k: _scalar_text(x) for k, x in v.items()} if isinstance(v, dict) else v

    @field_validator("command", "args", "env")
    @classmethod
    def _no_nul(cls, v: list[str] | dict[str, str]) -> list[str] | dict[str, str]:
        # A program's arguments and environment are C strings: a NUL cannot reach it.
        values = v.values() if isinstance(v, dict) else v
        if any("\0" in x for x in values):
            raise ValueError("a NUL byte (\\0) cannot be passed to a program; remove it")
        return v

    @property
    def argv(self) -> list[str]:
        """The full command line: command, then args."""
        return [*self.command, *self.args]

    @field_validator("queue")
    @classmethod
    def _queue_name(cls, v: str) -> str:
        if not _QUEUE.match(v):
            raise ValueError("a queue name is 1-63 of a-z, 0-9, '-', '_'")
        return v

    @field_validator("env", "env_from_secret")
    @classmethod
    def _env_names(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        for name, value in v.items():
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not a usable environment variable name")
            check_env_name_free(name, value if info.field_name == "env" else None)
        return v

    @field_validator("name")
    @classmethod
    def _printable_name(cls, v: str) -> str:
        return check_name(v)

    @field_validator("env_from_secret")
    @classmethod
    def _secret_refs(cls, v: dict[str, str]) -> dict[str, str]:
        for name, ref in v.items():
            if not _SECRET_REF.match(ref):
                raise ValueError(
                    f"{name}: {ref!r} is not a secret reference; use "
                    "projects/P/secrets/S[/versions/V] or env:VAR"
                )
        return v

    @field_validator("run_id")
    @classmethod
    def _run_id(cls, v: str | None) -> str | None:
        if v is not None and not RUN_ID_RE.match(v):
            raise ValueError("a run id is 1-63 of a-z, 0-9, '-', starting with a letter")
        return v


install_lazy_sections(JobSpec)


def missing_env_secrets(spec: JobSpec, environ: Mapping[str, str] | None = None) -> list[str]:
    """The ``env:VAR`` secrets of ``spec`` whose variable is not set in ``environ`` (this
    process's): an agent started from here could not give them to the job."""
    env = os.environ if environ is None else environ
    return [
        f"{name} (env:{ref[4:]})"
        for name, ref in spec.env_from_secret.items()
        if ref.startswith("env:") and ref[4:] not in env
    ]
