"""The ``gce:`` section of job.yaml: what only a VM has (``backend: gce``)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from relaunch.spec.common import Duration, Strict

COS_IMAGE = "projects/cos-cloud/global/images/family/cos-stable"
DEFAULT_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
# Metadata keys relaunch writes itself; a user's extra metadata may not override them.
RESERVED_METADATA = re.compile(r"^(startup-script|shutdown-script|relaunch-.*|user-data)$")
_METADATA_KEY = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


def region_of(zone: str) -> str:
    """``us-central1-a`` → ``us-central1``."""
    return zone.rsplit("-", 1)[0]


class GceOptions(Strict):
    """Settings of the spot VM that runs each attempt (backend gce)."""

    image: str = Field(
        COS_IMAGE,
        description="boot image (Container-Optimized OS by default; the start-up script "
        "needs COS's cos-extensions and docker)",
    )
    network: str | None = Field(None, description="e.g. global/networks/default")
    subnetwork: str | None = Field(None, description="e.g. regions/us-central1/subnetworks/s")
    external_ip: bool = Field(True, description="give the VM an external IP (needed without NAT)")
    service_account: str | None = Field(
        None, description="the VM's service account (default: [gcp] service_account, or Compute's)"
    )
    scopes: list[str] = Field(default_factory=lambda: list(DEFAULT_SCOPES))
    termination_action: Literal["delete", "stop"] = Field(
        "delete", description="what Google does with a preempted spot VM"
    )
    max_run_duration: Duration | None = Field(
        None, description="Google ends the VM after this long (e.g. 24h)"
    )
    metadata: dict[str, str] = Field(default_factory=dict, description="extra VM metadata")
    gpu_timeout: Duration = Field(
        300.0,
        gt=0,
        description="longest wait for the GPU driver after cos-extensions install (keep it "
        "under startup_timeout, which also covers the image pull)",
    )
    tags: list[str] = Field(default_factory=list, description="network tags")

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not _METADATA_KEY.match(key):
                raise ValueError(f"metadata key {key!r}: 1-128 of a-z, A-Z, 0-9, '_', '-'")
            if RESERVED_METADATA.match(key):
                raise ValueError(f"metadata key {key!r} is set by relaunch; choose another name")
        return v

    @field_validator("max_run_duration")
    @classmethod
    def _max_run(cls, v: float | None) -> float | None:
        if v is not None and not 30 <= v <= 120 * 86400:
            raise ValueError("max_run_duration is between 30s and 120d")
        return v
