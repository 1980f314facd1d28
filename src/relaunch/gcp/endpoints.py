"""Where each Google Cloud API is reached (DESIGN.md §5).

An endpoint comes from, in order: the ``RELAUNCH_<API>_ENDPOINT`` environment
variable, ``[gcp.endpoints]`` in relaunch.toml, or Google's default (``None``). The
same product code thus runs against Google, a private endpoint or a local emulator.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from relaunch.errors import UserInputError

# The APIs whose endpoint can be configured. Here, not in spec/: the runtime resolves
# the storage endpoint and must not load pydantic to do it.
GCP_APIS = (
    "aiplatform",
    "compute",
    "storage",
    "cloudbuild",
    "run",
    "logging",
    "secretmanager",
    "artifactregistry",
)

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def endpoint_env_var(api: str) -> str:
    """The environment variable that overrides ``api``'s endpoint."""
    return f"RELAUNCH_{api.upper()}_ENDPOINT"


def resolve_endpoint(api: str, configured: Mapping[str, str] | None = None) -> str | None:
    """The endpoint URL for ``api``, or None for Google's default."""
    if api not in GCP_APIS:
        raise UserInputError(f"unknown Google Cloud API {api!r}", hint=f"one of {GCP_APIS}")
    url = os.environ.get(endpoint_env_var(api)) or (configured or {}).get(api)
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserInputError(
            f"endpoint {url!r} for {api} is not an http(s) URL",
            hint=f"set {endpoint_env_var(api)} or [gcp.endpoints] {api} to e.g. https://host:port",
        )
    return url.rstrip("/")


def is_local_emulator(url: str | None) -> bool:
    """True for a plain-http loopback URL: an emulator that takes no credentials."""
    if not url:
        return False
    parts = urlsplit(url)
    return parts.scheme == "http" and (parts.hostname or "") in _LOOPBACK
