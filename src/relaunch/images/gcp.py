"""Google Cloud for images: the project's clients and error classification
(``relaunch.gcp``), bound to a relaunch.toml, with the fixes that matter for builds.

Every google import happens inside a function, so importing this module costs nothing.
"""

from __future__ import annotations

from typing import Any

from relaunch.errors import BackendError
from relaunch.gcp import clients
from relaunch.gcp.endpoints import resolve_endpoint
from relaunch.gcp.errors import backend_error
from relaunch.spec.project import ProjectConfig
from relaunch.states import Reason


def endpoint(config: ProjectConfig, api: str) -> str | None:
    """``$RELAUNCH_<API>_ENDPOINT``, else ``[gcp.endpoints] <api>``, else None (Google)."""
    return resolve_endpoint(api, config.gcp.endpoints)


def storage_client(config: ProjectConfig) -> Any:
    return clients.storage_client(config.gcp.project, config.gcp.endpoints)


def cloudbuild_client(config: ProjectConfig) -> Any:
    return clients.cloud_build_client(config.gcp.endpoints)


def classify(exc: BaseException, doing: str, *, permission_hint: str) -> BackendError:
    """A Google error met while ``doing`` a build step, as a BackendError; a permission
    error carries ``permission_hint`` (the role a build needs), a missing resource the
    relaunch.toml settings to check."""
    from google.api_core import exceptions as gexc

    if isinstance(exc, gexc.RetryError) and exc.cause is not None:
        return classify(exc.cause, f"{doing} (after retries)", permission_hint=permission_hint)
    error = backend_error(exc, doing)
    if error.reason == Reason.PERMISSION.value:
        error.hint = permission_hint
    elif getattr(exc, "code", None) == 404 or isinstance(exc, gexc.NotFound):
        error.hint = "check [gcp] project and staging_bucket in relaunch.toml"
    return error
