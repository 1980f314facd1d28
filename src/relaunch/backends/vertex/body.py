"""The CustomJob one attempt submits, built in one place from the job spec.

The body is a snake_case mapping in the shape of ``aiplatform_v1.CustomJob`` (what the
REST API calls camelCase). Worker pools come from the W&B-style queue config
(``vertex.spec``) or from ``resources:``. Every container runs the relaunch runtime
around its command; secret values never appear here — only references, which the
runtime resolves from Secret Manager inside the job. (Vertex has no secret env of its
own for custom jobs: in the v1 API a ContainerSpec env var is a name and a plain
value; ``SecretEnvVar`` exists only for Agent Engine deployments.)
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from relaunch.backends.base import SubmitContext
from relaunch.backends.contract import job_environment
from relaunch.errors import SpecError
from relaunch.runs.records import RunRecord
from relaunch.spec.job import Resources
from relaunch.spec.templates import resolve_macros
from relaunch.spec.vertex import DiskSpec, EnvVar, MachineSpec, WorkerPoolSpec
from relaunch.store.gcs_auth import METADATA_SERVER, SOURCE_VAR

RUN_LABEL = "relaunch-run-id"
ATTEMPT_LABEL = "relaunch-attempt"
STRATEGIES = {"spot": "SPOT", "flex-start": "FLEX_START", "standard": "STANDARD"}
# Endpoints the runtime inside the job talks to, passed on when relaunch.toml sets them.
_JOB_APIS = ("storage", "secretmanager")


def pools_from_resources(resources: Resources) -> list[WorkerPoolSpec]:
    """``resources:`` as worker pools: Vertex wants the chief alone in pool 0, so N
    replicas are pool 0 (one) plus pool 1 (N-1) of the same machine."""
    machine = MachineSpec(
        machine_type=resources.machine_type or "",
        accelerator_type=resources.accelerator_type or "ACCELERATOR_TYPE_UNSPECIFIED",
        accelerator_count=resources.accelerator_count,
    )
    disk = DiskSpec(boot_disk_size_gb=resources.boot_disk_gb) if resources.boot_disk_gb else None
    counts = [1] + ([resources.replica_count - 1] if resources.replica_count > 1 else [])
    return [WorkerPoolSpec(machine_spec=machine, replica_count=n, disk_spec=disk) for n in counts]


def secret_ref(project: str, var: EnvVar) -> str:
    """A Kubernetes-style ``valueFrom.secretKeyRef`` as a Secret Manager version name."""
    assert var.valueFrom is not None
    ref = var.valueFrom.secretKeyRef
    key = ref.key or "latest"
    version = key if key == "latest" or key.isdigit() else "latest"
    secret = (
        ref.name if ref.name.startswith("projects/") else f"projects/{project}/secrets/{ref.name}"
    )
    return f"{secret}/versions/{version}"


class BodyBuilder:
    """Builds the CustomJob of attempt ``n`` of ``run`` in ``region``."""

    def __init__(self, run: RunRecord, n: int, region: str, ctx: SubmitContext) -> None:
        self.run, self.n, self.region, self.ctx = run, n, region, ctx
        self.spec = run.spec
        self.opts = run.spec.vertex
        self.project = str(run.gcp.get("project") or "")

    def m(self, value: str) -> str:
        """``${macros}`` of the queue config, resolved like the command's."""
        return resolve_macros(value, self.ctx.macros, os.environ)

    def labels(self) -> dict[str, str]:
        queue_labels = self.opts.spec.labels if self.opts.spec else {}
        return {
            **self.spec.labels,
            **queue_labels,
            RUN_LABEL: self.run.run_id,
            ATTEMPT_LABEL: str(self.n),
        }

    def build(self) -> dict[str, Any]:
        q = self.opts.spec
        pools = q.worker_pool_specs if q else pools_from_resources(self.spec.resources)
        body: dict[str, Any] = {
            "display_name": self.m(q.display_name) if q and q.display_name else self.name(),
            "labels": self.labels(),
            "job_spec": self.job_spec([self.pool(p) for p in pools]),
        }
        kms = (q.encryption_spec.kms_key_name if q and q.encryption_spec else None) or (
            q.encryption_spec_key_name if q else None
        )
        if kms:
            body["encryption_spec"] = {"kms_key_name": kms}
        return body

    def name(self) -> str:
        return f"{self.spec.name[:80]} {self.run.run_id} #{self.n}"[:128]

    def job_spec(self, pools: list[dict[str, Any]]) -> dict[str, Any]:
        q, r, gcp = self.opts.spec, self.opts.run, self.run.gcp
        out: dict[str, Any] = {"worker_pool_specs": pools, "scheduling": self.scheduling()}
        first = {
            "service_account": r.service_account
            or (q.service_account if q else None)
            or gcp.get("service_account"),
            "network": r.network or (q.network if q else None),
            "tensorboard": r.tensorboard or (q.tensorboard if q else None),
            "persistent_resource_id": r.persistent_resource_id
            or (q.persistent_resource_id if q else None),
            "enable_web_access": r.enable_web_access
            if r.enable_web_access is not None
            else (q.enable_web_access if q else None),
            "enable_dashboard_access": r.enable_dashboard_access
            if r.enable_dashboard_access is not None
            else (q.enable_dashboard_access if q else None),
            "experiment": r.experiment,
            "experiment_run": r.experiment_run,
        }
        out.update({k: self.m(v) if isinstance(v, str) else v for k, v in first.items() if v})
        ranges = r.reserved_ip_ranges or (q.reserved_ip_ranges if q else [])
        if ranges:
            out["reserved_ip_ranges"] = list(ranges)
        output = self.output_dir()
        if output:
            out["base_output_directory"] = {"output_uri_prefix": output}
        return out

    def output_dir(self) -> str | None:
        q = self.opts.spec
        if q and q.base_output_dir:
            return self.m(q.base_output_dir)
        bucket = (q.staging_bucket if q else None) or self.run.gcp.get("staging_bucket")
        if not bucket:
            return None
        return f"{self.m(str(bucket)).rstrip('/')}/relaunch/{self.run.run_id}/attempt-{self.n}"

    def scheduling(self) -> dict[str, Any]:
        r, resources = self.opts.run, self.spec.resources
        strategy = r.scheduling_strategy or STRATEGIES[resources.provisioning]
        out: dict[str, Any] = {"strategy": strategy}
        if r.timeout:
            out["timeout"] = timedelta(seconds=r.timeout)
        if r.restart_job_on_worker_restart:
            out["restart_job_on_worker_restart"] = True
        if r.disable_retries is not None:
            out["disable_retries"] = r.disable_retries
        wait = r.max_wait_duration or resources.max_wait
        if wait and strategy == "FLEX_START":
            out["max_wait_duration"] = timedelta(seconds=wait)
        elif wait:
            raise SpecError(
                f"max_wait applies to FLEX_START only (the strategy is {strategy})",
                hint="set resources.provisioning: flex-start, or remove max_wait",
            )
        return out

    def pool(self, pool: WorkerPoolSpec) -> dict[str, Any]:
        c = pool.container_spec
        image = self.m(c.image_uri) if c.image_uri else (self.ctx.image_uri or self.spec.image)
        command = [self.m(a) for a in [*c.command, *c.args]] if c.command else self.ctx.command
        secrets = {v.name: secret_ref(self.project, v) for v in c.env if v.valueFrom}
        env = {
            **self.ctx.env,
            **{v.name: self.m(v.value) for v in c.env if v.value is not None},
            **self.endpoints(),
            # The container reaches its VM's metadata server, which hands out tokens for
            # the job's service account: the runtime reads them there (store/gcs_auth.py).
            SOURCE_VAR: METADATA_SERVER,
            **job_environment(self.run, self.n, self.ctx.store.url, secrets, token=self.ctx.token),
        }
        machine = pool.machine_spec
        out: dict[str, Any] = {
            "machine_spec": {
                "machine_type": self.m(machine.machine_type),
                "accelerator_type": self.m(machine.accelerator_type),
                "accelerator_count": machine.accelerator_count,
            },
            "replica_count": pool.replica_count,
            "container_spec": {
                "image_uri": image,
                "command": [*self.opts.runtime, *command],
                "env": [{"name": k, "value": v} for k, v in env.items()],
            },
        }
        if pool.disk_spec is not None:
            disk = pool.disk_spec.model_dump(exclude_none=True)
            if disk:
                out["disk_spec"] = disk
        return out

    def endpoints(self) -> dict[str, str]:
        configured = self.run.gcp.get("endpoints") or {}
        return {
            f"RELAUNCH_{api.upper()}_ENDPOINT": str(configured[api])
            for api in _JOB_APIS
            if configured.get(api)
        }
