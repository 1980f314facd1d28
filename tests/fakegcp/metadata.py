"""A GCE metadata server for one fake instance (what the runtime inside the VM reads).

Reached as ``GCE_METADATA_HOST=127.0.0.1:PORT`` (the variable google-auth honours).
Serves ``/computeMetadata/v1/instance/{preempted,name,id,zone,attributes/KEY}`` and
``project/project-id``, requires ``Metadata-Flavor: Google`` like the real one, and
supports ``?wait_for_change=true`` (bounded by ``timeout_sec``, at most 30 s).
"""

from __future__ import annotations

import threading
from typing import Any

from tests.fakegcp.server import FakeError, HttpServer, Request, Response, Router


class MetadataServer:
    def __init__(self, instance: dict[str, Any], project: str) -> None:
        self.instance = instance  # the live compute resource (metadata items are read from it)
        self.project = project
        self.preempted = False
        self._changed = threading.Condition()
        router = Router()
        router.add("metadata", "GET", r"/computeMetadata/v1/(?P<path>.+)", self.get)
        self.http = HttpServer(router)
        self.host = f"127.0.0.1:{self.http.port}"

    def start(self) -> None:
        self.http.start()

    def stop(self) -> None:
        with self._changed:
            self._changed.notify_all()
        self.http.stop()

    def preempt(self) -> None:
        with self._changed:
            self.preempted = True
            self._changed.notify_all()

    def _value(self, path: str) -> str:
        inst = self.instance
        if path == "instance/preempted":
            return "TRUE" if self.preempted else "FALSE"
        if path == "instance/name":
            return str(inst["name"])
        if path == "instance/id":
            return str(inst["id"])
        if path == "instance/zone":
            return f"projects/{self.project}/zones/{inst['zone'].rsplit('/', 1)[-1]}"
        if path == "project/project-id":
            return self.project
        if path == "instance/service-accounts/default/email":
            accounts = inst.get("serviceAccounts") or [{}]
            email = accounts[0].get("email") or "default"
            default = "123456789-compute@developer.gserviceaccount.com"
            return default if email == "default" else str(email)
        if path == "instance/service-accounts/default/token":
            return '{"access_token": "fake-vm-token", "expires_in": 3599, "token_type": "Bearer"}'
        if path.startswith("instance/attributes/"):
            key = path[len("instance/attributes/") :]
            for item in (inst.get("metadata") or {}).get("items") or []:
                if item.get("key") == key:
                    return str(item.get("value", ""))
        raise FakeError(404, "Not Found")

    def get(self, req: Request, path: str) -> Response:
        if req.headers.get("metadata-flavor") != "Google":
            raise FakeError(403, "Missing Metadata-Flavor:Google header.")
        value = self._value(path)
        if req.query.get("wait_for_change") == "true" and req.query.get("last_etag", "") in (
            "",
            value,
        ):
            timeout = min(float(req.query.get("timeout_sec") or 30), 30.0)
            with self._changed:
                self._changed.wait_for(lambda: self._value(path) != value, timeout)
            value = self._value(path)
        headers = {"Metadata-Flavor": "Google", "ETag": value, "Content-Type": "text/plain"}
        return Response(200, value.encode(), headers)
