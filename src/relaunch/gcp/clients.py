"""Lazy factories for Google Cloud clients, built for the configured endpoints.

Every google-cloud import happens inside a function, so loading this module costs
nothing. All GAPIC clients use the REST transport: it is the one that works against
any http(s) endpoint (Google, a private endpoint or a local emulator), so the path
tested offline is the path used in production. A plain-http loopback endpoint is an
emulator and gets anonymous credentials; anything else uses Application Default
Credentials.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relaunch.gcp.endpoints import is_local_emulator, resolve_endpoint

Endpoints = Mapping[str, str] | None


def _gapic(cls: Any, api: str, endpoints: Endpoints, default: str | None = None) -> Any:
    from google.api_core.client_options import ClientOptions

    url = resolve_endpoint(api, endpoints) or default
    kwargs: dict[str, Any] = {"transport": "rest"}
    if url:
        kwargs["client_options"] = ClientOptions(api_endpoint=url)
    if is_local_emulator(url):
        from google.auth.credentials import AnonymousCredentials

        kwargs["credentials"] = AnonymousCredentials()
    return cls(**kwargs)


def storage_client(project: str | None = None, endpoints: Endpoints = None) -> Any:
    """A google.cloud.storage.Client (honours STORAGE_EMULATOR_HOST when no endpoint is set)."""
    from google.cloud.storage import Client

    url = resolve_endpoint("storage", endpoints)
    if url is None:
        return Client(project=project) if project else Client()
    kwargs: dict[str, Any] = {"client_options": {"api_endpoint": url}}
    if is_local_emulator(url):
        from google.auth.credentials import AnonymousCredentials

        kwargs["credentials"] = AnonymousCredentials()
        project = project or "relaunch-local"
    return Client(project=project, **kwargs)


def vertex_job_client(region: str, endpoints: Endpoints = None) -> Any:
    """aiplatform_v1.JobServiceClient for ``region`` (Vertex endpoints are regional)."""
    from google.cloud import aiplatform_v1

    default = f"https://{region}-aiplatform.googleapis.com"
    return _gapic(aiplatform_v1.JobServiceClient, "aiplatform", endpoints, default)


def compute_zone_operations_client(endpoints: Endpoints = None) -> Any:
    from google.cloud import compute_v1

    return _gapic(compute_v1.ZoneOperationsClient, "compute", endpoints)


def compute_instances_client(endpoints: Endpoints = None) -> Any:
    """compute_v1.InstancesClient whose operation poller uses the same endpoint.

    The library builds its own ZoneOperationsClient for ``.result()`` with the default
    endpoint; injecting ours keeps operation polling on the configured endpoint.
    """
    from google.cloud import compute_v1

    client = _gapic(compute_v1.InstancesClient, "compute", endpoints)
    ops = compute_zone_operations_client(endpoints)
    client._transport._extended_operations_services["zone_operations"] = ops
    return client


def compute_regions_client(endpoints: Endpoints = None) -> Any:
    from google.cloud import compute_v1

    return _gapic(compute_v1.RegionsClient, "compute", endpoints)


def compute_accelerator_types_client(endpoints: Endpoints = None) -> Any:
    from google.cloud import compute_v1

    return _gapic(compute_v1.AcceleratorTypesClient, "compute", endpoints)


def cloud_build_client(endpoints: Endpoints = None) -> Any:
    from google.cloud.devtools import cloudbuild_v1

    return _gapic(cloudbuild_v1.CloudBuildClient, "cloudbuild", endpoints)


def run_jobs_client(endpoints: Endpoints = None) -> Any:
    from google.cloud import run_v2

    return _gapic(run_v2.JobsClient, "run", endpoints)


def run_executions_client(endpoints: Endpoints = None) -> Any:
    from google.cloud import run_v2

    return _gapic(run_v2.ExecutionsClient, "run", endpoints)


def secret_manager_client(endpoints: Endpoints = None) -> Any:
    from google.cloud import secretmanager_v1

    return _gapic(secretmanager_v1.SecretManagerServiceClient, "secretmanager", endpoints)


def logging_client(project: str, endpoints: Endpoints = None) -> Any:
    """google.cloud.logging.Client over its JSON API (its GAPIC has no REST transport)."""
    from google.cloud import logging

    url = resolve_endpoint("logging", endpoints)
    kwargs: dict[str, Any] = {"project": project, "_use_grpc": False}
    if url:
        kwargs["client_options"] = {"api_endpoint": url}
    if is_local_emulator(url):
        from google.auth.credentials import AnonymousCredentials

        kwargs["credentials"] = AnonymousCredentials()
    return logging.Client(**kwargs)
