"""The instance one attempt inserts, built in one place from the job spec.

The body is a snake_case mapping in the shape of ``compute_v1.Instance``. The
container's command and environment travel base64-encoded in metadata, read by the
start-up script (``script.py``); secret values never appear here — only references,
which the runtime resolves from Secret Manager inside the VM.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import quote

from relaunch.backends.base import SubmitContext
from relaunch.backends.contract import job_environment
from relaunch.backends.gce.script import nul_joined, startup_script
from relaunch.errors import SpecError
from relaunch.gcp.endpoints import resolve_endpoint
from relaunch.runs.records import RunRecord
from relaunch.store.gcs_auth import METADATA_SERVER, SOURCE_VAR

RUN_LABEL = "relaunch-run-id"
ATTEMPT_LABEL = "relaunch-attempt"
#: the runtime wraps the command; it watches instance/preempted when RELAUNCH_ON_GCE is set
RUNTIME = ["relaunch-runtime", "--"]
#: seconds docker gives the container after SIGTERM when the VM shuts down (spot: ~30 s)
STOP_TIMEOUT = 25
DEFAULT_BOOT_DISK_GB = 50
_JOB_APIS = ("storage", "secretmanager")
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]*$", re.IGNORECASE)
_STORAGE = "https://storage.googleapis.com"


def vm_name(run_id: str, n: int) -> str:
    """The VM of attempt ``n``: one name per attempt, so a retried insert can never make
    a second VM (Google answers 409). Long run ids keep a hash to stay unique."""
    base = run_id if len(run_id) <= 50 else f"{run_id[:41]}-{_digest(run_id)}"
    return f"{base}-{int(n)}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def accelerator_name(accelerator_type: str) -> str:
    """Vertex-style ``NVIDIA_TESLA_T4`` or Compute's ``nvidia-tesla-t4`` → Compute's."""
    return accelerator_type.lower().replace("_", "-")


def registry_of(image: str) -> str:
    """The Artifact Registry / Container Registry host of ``image``, or ""."""
    host = image.split("/", 1)[0]
    return host if host.endswith(("-docker.pkg.dev", "gcr.io")) else ""


def upload_url(store_url: str, run_id: str, endpoint: str | None, folder: str = "runs") -> str:
    """The JSON API media-upload URL whose ``name=`` ends at ``<folder>/<run_id>/``
    (``runs``, or ``live`` for the heartbeat): the script appends an url-encoded key."""
    bucket, _, prefix = store_url[len("gs://") :].partition("/")
    key = "/".join(p for p in (prefix.strip("/"), f"{folder}/{run_id}/") if p)
    return (
        f"{(endpoint or _STORAGE).rstrip('/')}/upload/storage/v1/b/{quote(bucket, safe='')}"
        f"/o?uploadType=media&name={quote(key, safe='')}"
    )


class InstanceBuilder:
    """Builds the ``compute_v1.Instance`` mapping of attempt ``n`` of ``run`` in ``zone``."""

    def __init__(self, run: RunRecord, n: int, zone: str, ctx: SubmitContext) -> None:
        self.run, self.n, self.zone, self.ctx = run, n, zone, ctx
        self.spec = run.spec
        self.opts = run.spec.gce
        self.endpoints: dict[str, str] = run.gcp.get("endpoints") or {}

    @property
    def image(self) -> str:
        image = self.ctx.image_uri or self.run.image_uri or self.spec.image or ""
        if not _IMAGE.match(image):
            raise SpecError(
                f"gce: {image!r} is not an image reference",
                hint="image: a stack image or a full URI (REGION-docker.pkg.dev/P/REPO/NAME:TAG)",
            )
        return image

    @property
    def gpus(self) -> int:
        r = self.spec.resources
        return r.accelerator_count if r.accelerator_type else 0

    def labels(self) -> dict[str, str]:
        return {**self.spec.labels, RUN_LABEL: self.run.run_id, ATTEMPT_LABEL: str(self.n)}

    def container_env(self) -> dict[str, str]:
        env = {**self.ctx.env}
        for api in _JOB_APIS:
            url = resolve_endpoint(api, self.endpoints)
            if url:
                env[f"RELAUNCH_{api.upper()}_ENDPOINT"] = url
        env["RELAUNCH_ON_GCE"] = "1"  # the runtime watches instance/preempted
        env[SOURCE_VAR] = METADATA_SERVER  # and signs with the VM's service account
        return {
            **env,
            **job_environment(self.run, self.n, self.ctx.store.url, token=self.ctx.token),
        }

    def metadata(self) -> list[dict[str, str]]:
        image = self.image
        items = {
            **self.opts.metadata,
            "startup-script": startup_script(),
            "google-logging-enabled": "true",
            "relaunch-run-id": self.run.run_id,
            "relaunch-attempt": str(self.n),
            "relaunch-image": image,
            "relaunch-argv": nul_joined([*RUNTIME, *self.ctx.command]),
            "relaunch-env": nul_joined(self.container_env()),
            "relaunch-gpus": str(self.gpus),
            "relaunch-gpu-timeout": str(int(self.opts.gpu_timeout)),
            "relaunch-stop-timeout": str(STOP_TIMEOUT),
            "relaunch-store-upload": upload_url(
                self.ctx.store.url, self.run.run_id, resolve_endpoint("storage", self.endpoints)
            ),
            "relaunch-live-upload": upload_url(
                self.ctx.store.url,
                self.run.run_id,
                resolve_endpoint("storage", self.endpoints),
                folder="live",
            ),
            "relaunch-registry": registry_of(image),
        }
        return [{"key": k, "value": v} for k, v in items.items()]

    def scheduling(self) -> dict[str, Any]:
        spot = self.spec.resources.provisioning == "spot"
        out: dict[str, Any] = {
            "automatic_restart": False,  # relaunch recovers; a silent reboot would not resume
            "on_host_maintenance": "TERMINATE" if self.gpus or spot else "MIGRATE",
        }
        if spot:
            out["provisioning_model"] = "SPOT"
        if spot or self.opts.max_run_duration:
            out["instance_termination_action"] = self.opts.termination_action.upper()
        if self.opts.max_run_duration:
            out["max_run_duration"] = {"seconds": int(self.opts.max_run_duration)}
        return out

    def network(self) -> dict[str, Any]:
        nic: dict[str, Any] = {"network": self.opts.network or "global/networks/default"}
        if self.opts.subnetwork:
            nic["subnetwork"] = self.opts.subnetwork
        if self.opts.external_ip:
            nic["access_configs"] = [{"name": "External NAT", "type_": "ONE_TO_ONE_NAT"}]
        return nic

    def build(self) -> dict[str, Any]:
        r, zone = self.spec.resources, self.zone
        service_account = self.opts.service_account or self.run.gcp.get("service_account")
        body: dict[str, Any] = {
            "name": vm_name(self.run.run_id, self.n),
            "machine_type": f"zones/{zone}/machineTypes/{r.machine_type}",
            "labels": self.labels(),
            "scheduling": self.scheduling(),
            "disks": [
                {
                    "boot": True,
                    "auto_delete": True,
                    "initialize_params": {
                        "source_image": self.opts.image,
                        "disk_size_gb": r.boot_disk_gb or DEFAULT_BOOT_DISK_GB,
                    },
                }
            ],
            "network_interfaces": [self.network()],
            "service_accounts": [
                {"email": service_account or "default", "scopes": list(self.opts.scopes)}
            ],
            "metadata": {"items": self.metadata()},
        }
        if self.gpus:
            body["guest_accelerators"] = [
                {
                    "accelerator_type": f"zones/{zone}/acceleratorTypes/"
                    + accelerator_name(r.accelerator_type or ""),
                    "accelerator_count": self.gpus,
                }
            ]
        if self.opts.tags:
            body["tags"] = {"items": list(self.opts.tags)}
        return body
