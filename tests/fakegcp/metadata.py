"""A GCE metadata server for one fake machine (what the runtime inside the VM reads):
a Compute instance, or the VM of a Vertex AI custom job's worker.

Reached as ``GCE_METADATA_HOST=127.0.0.1:PORT`` (the variable google-auth honours; with
``GCE_METADATA_IP`` too, google-auth's start-up ping finds it). Serves
``/computeMetadata/v1/instance/{preempted,name,id,zone,attributes/KEY}``,
``project/project-id``, the service account (``service-accounts/{default,EMAIL}/`` with
``?recursive=true``, ``.../email``, ``.../token``: :attr:`token` for the machine's
service account, valid :attr:`lifetime` seconds, counted in :attr:`tokens_issued`, or
refused with status :attr:`refuse`), requires ``Metadata-Flavor: Google``
like the real one, and supports ``?wait_for_change=true`` (bounded by ``timeout_sec``,
at most 30 s).
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from tests.fakegcp.server import FakeError, HttpServer, Request, Response, Router

_DEFAULT_ACCOUNT = "123456789-compute@developer.gserviceaccount.com"
_ACCOUNT = re.compile(r"instance/service-accounts/(?P<who>[^/]+)/(?P<what>token|email|)$")


class MetadataServer:
    def __init__(
        self, instance: dict[str, Any], project: str, *, token: str = "fake-vm-token"
    ) -> None:
        self.instance = instance  # the live compute resource (metadata items are read from it)
        self.project = project
        self.preempted = False
        self.token = token  # the access token it hands out for the machine's service account
        self.lifetime = 3599  # its expires_in, seconds
        self.refuse: int | None = None  # answer token requests with this status instead
        self.tokens_issued = 0
        self._changed = threading.Condition()
        router = Router()
        router.add("metadata", "GET", r"/", self.ping)
        router.add("metadata", "GET", r"/computeMetadata/v1/(?P<path>.+)", self.get)
        self.http = HttpServer(router)
        self.host = f"127.0.0.1:{self.http.port}"
        self.stopped = False

    def start(self) -> None:
        self.http.start()

    def stop(self) -> None:
        self.stopped = True
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
        account = _ACCOUNT.match(path)
        if account and account["who"] in ("default", self.email):
            if account["what"] == "email":
                return self.email
            if account["what"] == "token":
                token = {"access_token": self.token, "expires_in": self.lifetime}
                return json.dumps({**token, "token_type": "Bearer"})
            scopes = ["https://www.googleapis.com/auth/cloud-platform"]
            return json.dumps({"aliases": ["default"], "email": self.email, "scopes": scopes})
        if path.startswith("instance/attributes/"):
            key = path[len("instance/attributes/") :]
            for item in (inst.get("metadata") or {}).get("items") or []:
                if item.get("key") == key:
                    return str(item.get("value", ""))
        raise FakeError(404, "Not Found")

    @property
    def email(self) -> str:
        """The machine's service account."""
        accounts = self.instance.get("serviceAccounts") or [{}]
        email = accounts[0].get("email") or "default"
        return _DEFAULT_ACCOUNT if email == "default" else str(email)

    def ping(self, req: Request) -> Response:
        """What google-auth's detection reads: any answer with the flavor header."""
        return Response(200, b"", {"Metadata-Flavor": "Google"})

    def get(self, req: Request, path: str) -> Response:
        if req.headers.get("metadata-flavor") != "Google":
            raise FakeError(403, "Missing Metadata-Flavor:Google header.")
        if path.endswith("/token") and self.refuse:
            raise FakeError(self.refuse, "The service account lacks the requested scopes.")
        value = self._value(path)
        if path.endswith("/token"):
            with self._changed:
                self.tokens_issued += 1
        if req.query.get("wait_for_change") == "true" and req.query.get("last_etag", "") in (
            "",
            value,
        ):
            timeout = min(float(req.query.get("timeout_sec") or 30), 30.0)
            with self._changed:
                self._changed.wait_for(lambda: self._value(path) != value, timeout)
            value = self._value(path)
        kind = "application/json" if value.startswith("{") else "text/plain"
        headers = {"Metadata-Flavor": "Google", "ETag": value, "Content-Type": kind}
        return Response(200, value.encode(), headers)
