"""The one explicit mapping from backend name to implementation (imported lazily)."""

from __future__ import annotations

import importlib

from relaunch.backends.base import Backend
from relaunch.errors import UserInputError

BACKENDS: dict[str, str] = {
    "local": "relaunch.backends.local.backend:LocalBackend",
    "vertex": "relaunch.backends.vertex.backend:VertexBackend",
}

_instances: dict[str, Backend] = {}


def get_backend(name: str) -> Backend:
    if name not in _instances:
        target = BACKENDS.get(name)
        if target is None:
            raise UserInputError(
                f"backend {name!r} is not available in this version of relaunch",
                hint=f"available: {', '.join(sorted(BACKENDS))}",
            )
        module, attr = target.split(":")
        _instances[name] = getattr(importlib.import_module(module), attr)()
    return _instances[name]
