"""Secret Manager v1: ``versions/{v}:access`` (``latest`` or a number).

Tests add secrets with ``fake.secrets.add("name", b"value")``.
"""

from __future__ import annotations

import base64
import threading
from typing import Any

from tests.fakegcp.server import FakeError, Request, Router

_ACCESS = (
    r"/v1/projects/(?P<project>[^/]+)/secrets/(?P<secret>[^/]+)/versions/(?P<version>[^/:]+):access"
)


class SecretsService:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.secrets: dict[str, list[bytes]] = {}

    def add(self, name: str, value: bytes) -> int:
        """Add a version; returns its number (1-based)."""
        with self.lock:
            self.secrets.setdefault(name, []).append(value)
            return len(self.secrets[name])

    def register(self, router: Router) -> None:
        router.add("secretmanager", "GET", _ACCESS, self.access)

    def access(self, req: Request, project: str, secret: str, version: str) -> dict[str, Any]:
        import google_crc32c

        with self.lock:
            versions = self.secrets.get(secret) or []
            index = (
                len(versions) if version == "latest" else int(version) if version.isdigit() else 0
            )
            if not 1 <= index <= len(versions):
                raise FakeError(
                    404,
                    f"Secret Version [projects/{project}/secrets/{secret}/versions/{version}] "
                    "not found or has no enabled versions.",
                )
            data = versions[index - 1]
        return {
            "name": f"projects/{project}/secrets/{secret}/versions/{index}",
            "payload": {
                "data": base64.b64encode(data).decode(),
                "dataCrc32c": str(google_crc32c.value(data)),
            },
        }
