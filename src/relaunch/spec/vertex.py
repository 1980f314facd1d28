"""Vertex AI options of a job: a W&B-Launch-style queue config, accepted as is.

W&B Launch's Vertex queue config has two parts, in snake_case: ``spec`` (the arguments
of the SDK's ``CustomJob(...)``: worker pools, staging bucket…) and ``run`` (the
arguments of ``CustomJob.run(...)``: timeout, restarts, tensorboard…). Users put some
``run`` arguments under ``spec`` (service account, network); both places are accepted.
What W&B Launch cannot ask for, ``scheduling_strategy`` (SPOT, FLEX_START) and
``max_wait_duration``, is accepted under ``run`` too.

Without a queue config, ``resources:`` of job.yaml describes one worker pool.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from relaunch.spec.common import (
    Duration,
    Strict,
    check_env_name_free,
    check_labels,
    check_region,
)

Strategy = Literal["SPOT", "FLEX_START", "STANDARD", "ON_DEMAND", "LOW_COST"]


class SecretKeyRef(Strict):
    """Kubernetes-style ``secretKeyRef``: ``name`` is the Secret Manager secret; ``key``
    is its version when it is a number or ``latest`` (otherwise the latest version)."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_-]{1,255}$|^projects/[^/]+/secrets/[^/]+$")
    key: str | None = None


class ValueFrom(Strict):
    secretKeyRef: SecretKeyRef  # the spelling users copy from Kubernetes


class EnvVar(Strict):
    name: str = Field(..., pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    value: str | None = None
    valueFrom: ValueFrom | None = None

    @field_validator("value", mode="before")
    @classmethod
    def _text(cls, v: object) -> object:
        return (
            str(v).lower() if isinstance(v, bool) else str(v) if isinstance(v, int | float) else v
        )

    @model_validator(mode="after")
    def _one_source(self) -> EnvVar:
        check_env_name_free(self.name, self.value)
        if (self.value is None) == (self.valueFrom is None):
            raise ValueError(f"env {self.name}: give exactly one of value or valueFrom")
        return self


class MachineSpec(Strict):
    machine_type: str = Field(..., min_length=1, description="e.g. n1-standard-8, a2-highgpu-1g")
    accelerator_type: str = Field("ACCELERATOR_TYPE_UNSPECIFIED", description="e.g. NVIDIA_L4")
    accelerator_count: int = Field(0, ge=0, le=16)


class DiskSpec(Strict):
    boot_disk_type: Literal["pd-ssd", "pd-standard", "hyperdisk-balanced"] | None = None
    boot_disk_size_gb: int | None = Field(None, ge=10, le=65536)


class ContainerSpec(Strict):
    image_uri: str | None = Field(None, description="default: the job's image (${image_uri})")
    command: list[str] = Field(default_factory=list, description="default: the job's command")
    args: list[str] = Field(default_factory=list)
    env: list[EnvVar] = Field(default_factory=list)


class WorkerPoolSpec(Strict):
    machine_spec: MachineSpec
    replica_count: int = Field(1, ge=1)
    container_spec: ContainerSpec = Field(default_factory=ContainerSpec)  # type: ignore[arg-type]
    disk_spec: DiskSpec | None = None


class EncryptionSpec(Strict):
    kms_key_name: str = Field(..., pattern=r"^projects/[^/]+/locations/[^/]+/keyRings/")


class _RunArgs(Strict):
    """Arguments of ``CustomJob.run()`` that users also write under ``spec``."""

    service_account: str | None = None
    network: str | None = Field(None, description="projects/P/global/networks/N")
    reserved_ip_ranges: list[str] = Field(default_factory=list)
    enable_web_access: bool | None = None
    enable_dashboard_access: bool | None = None
    persistent_resource_id: str | None = None
    tensorboard: str | None = None


class QueueSpec(_RunArgs):
    """``spec:``: the ``CustomJob(...)`` constructor arguments."""

    worker_pool_specs: list[WorkerPoolSpec] = Field(..., min_length=1)
    staging_bucket: str | None = Field(None, pattern=r"^gs://.+")
    base_output_dir: str | None = Field(None, pattern=r"^gs://")
    display_name: str | None = Field(None, max_length=128)
    project: str | None = None
    location: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    encryption_spec: EncryptionSpec | None = None
    encryption_spec_key_name: str | None = None

    @field_validator("location")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        return v if v is None else check_region(v)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return check_labels(v)


class QueueRun(_RunArgs):
    """``run:``: the ``CustomJob.run(...)`` arguments, plus the scheduling strategy."""

    restart_job_on_worker_restart: bool = False
    timeout: Duration | None = Field(None, description="longest run of one CustomJob")
    scheduling_strategy: Strategy | None = Field(None, description="overrides provisioning")
    max_wait_duration: Duration | None = Field(None, description="FLEX_START: capacity wait")
    disable_retries: bool | None = None
    experiment: str | None = None
    experiment_run: str | None = None
    create_request_timeout: Duration | None = None
    sync: bool | None = Field(None, description="accepted for W&B configs; relaunch never blocks")


class VertexOptions(Strict):
    """``vertex:`` in job.yaml: a W&B-Launch Vertex queue config (``spec``/``run``)."""

    project: str | None = Field(None, description="default: [gcp] project, GOOGLE_CLOUD_PROJECT")
    spec: QueueSpec | None = None
    run: QueueRun = Field(default_factory=QueueRun)  # type: ignore[arg-type]
    runtime: list[str] = Field(
        default_factory=lambda: ["python", "-m", "relaunch.runtime", "--"],
        min_length=1,
        description="how the image starts the relaunch runtime around the command",
    )
