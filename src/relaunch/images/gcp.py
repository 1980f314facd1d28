"""Google Cloud plumbing for images: endpoints, lazily built clients, and one place that
turns a Google error into a :class:`BackendError` with a reason and a fix.

Every google import happens inside a function, so importing this module costs nothing.
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Any

from relaunch.errors import BackendError
from relaunch.spec.project import ProjectConfig


def endpoint(config: ProjectConfig, api: str) -> str | None:
    """``$RELAUNCH_<API>_ENDPOINT``, else ``[gcp.endpoints] <api>``, else None (Google)."""
    return os.environ.get(f"RELAUNCH_{api.upper()}_ENDPOINT") or config.gcp.endpoints.get(api)


def is_local_http(url: str | None) -> bool:
    if not url:
        return False
    parts = urllib.parse.urlsplit(url)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


def _credentials(url: str | None) -> Any:
    if is_local_http(url):
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()
    return None  # Application Default Credentials


def storage_client(config: ProjectConfig) -> Any:
    from google.cloud import storage  # type: ignore[attr-defined]

    url = endpoint(config, "storage")
    options = {"api_endpoint": url} if url else None
    return storage.Client(
        project=config.gcp.project, credentials=_credentials(url), client_options=options
    )


def cloudbuild_client(config: ProjectConfig) -> Any:
    from google.api_core.client_options import ClientOptions
    from google.cloud.devtools import cloudbuild_v1

    url = endpoint(config, "cloudbuild")
    if url is None:
        return cloudbuild_v1.CloudBuildClient()
    return cloudbuild_v1.CloudBuildClient(
        transport="rest",
        client_options=ClientOptions(api_endpoint=url),
        credentials=_credentials(url),
    )


def classify(exc: BaseException, doing: str, *, permission_hint: str) -> BackendError:
    """A google-api-core (or transport) error as a BackendError: 403 → permission with
    ``permission_hint``; 429 and 5xx → transient; 404 → the thing is missing."""
    from google.api_core import exceptions as gexc

    if isinstance(exc, gexc.RetryError) and exc.cause is not None:
        return classify(exc.cause, f"{doing} (after retries)", permission_hint=permission_hint)
    code = getattr(exc, "code", None)
    if code is None:  # google-resumable-media's InvalidResponse carries the HTTP response
        code = getattr(getattr(exc, "response", None), "status_code", None)
    message = getattr(exc, "message", None) or str(exc)
    first = str(message).splitlines()[0][:300] if message else type(exc).__name__
    if isinstance(exc, gexc.GoogleAPICallError):
        code = exc.code
    if code in (401, 403) or isinstance(exc, (gexc.PermissionDenied, gexc.Unauthenticated)):
        return BackendError(
            f"{doing}: permission denied: {first}", reason="permission", hint=permission_hint
        )
    if code == 429 or isinstance(exc, gexc.ResourceExhausted):
        return BackendError(
            f"{doing}: rate limited or out of quota: {first}",
            reason="transient",
            hint="retry in a minute; if it persists, check the project's quotas",
        )
    if isinstance(code, int) and code >= 500:
        return BackendError(
            f"{doing}: Google returned {code}: {first}", reason="transient", hint="retry"
        )
    if code == 404:
        return BackendError(
            f"{doing}: not found: {first}",
            reason="user-error",
            hint="check [gcp] project and staging_bucket in relaunch.toml",
        )
    if isinstance(exc, (ConnectionError, OSError)) or "ConnectionError" in type(exc).__name__:
        return BackendError(
            f"{doing}: cannot connect: {first}", reason="transient", hint="check the network"
        )
    return BackendError(f"{doing}: {first}", reason="user-error")
