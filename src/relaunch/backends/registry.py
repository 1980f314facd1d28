"""The one explicit mapping from backend name to implementation (imported lazily)."""

from __future__ import annotations

import importlib
import importlib.util

from relaunch.backends.base import Backend
from relaunch.errors import MissingDependency, UserInputError, gcp_not_installed

BACKENDS: dict[str, str] = {
    "local": "relaunch.backends.local.backend:LocalBackend",
    "vertex": "relaunch.backends.vertex.backend:VertexBackend",
    "gce": "relaunch.backends.gce.backend:GceBackend",
}

# A module of the `gcp` extra each cloud backend needs (found, not imported).
REQUIRES: dict[str, str] = {
    "vertex": "google.cloud.aiplatform_v1",
    "gce": "google.cloud.compute_v1",
}

_instances: dict[str, Backend] = {}
_missing: dict[str, MissingDependency | None] = {}


def missing(name: str) -> MissingDependency | None:
    """Why backend ``name`` cannot run on this host (a library is not installed), or
    None. Costs a look-up on the import path, once per process."""
    if name not in _missing:
        module = REQUIRES.get(name)
        error = None
        if module is not None:
            try:
                found = importlib.util.find_spec(module) is not None
            except ModuleNotFoundError:  # a parent package is missing
                found = False
            if not found:
                error = gcp_not_installed(module)
        _missing[name] = error
    return _missing[name]


def get_backend(name: str) -> Backend:
    if name not in _instances:
        target = BACKENDS.get(name)
        if target is None:
            raise UserInputError(
                f"backend {name!r} is not available in this version of relaunch",
                hint=f"available: {', '.join(sorted(BACKENDS))}",
            )
        error = missing(name)
        if error is not None:
            raise error
        module, attr = target.split(":")
        _instances[name] = getattr(importlib.import_module(module), attr)()
    return _instances[name]
