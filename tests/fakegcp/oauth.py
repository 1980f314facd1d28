"""Google's OAuth 2.0 token endpoint, enough for a service-account key file.

A key file (``GOOGLE_APPLICATION_CREDENTIALS``) names its ``token_uri``; pointing it at
``fake.oauth.token_uri`` lets google-auth exchange its signed assertion here (RFC 7523,
``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``; the signature is not
checked). The answer is an access token derived from the assertion's issuer, the key's
``client_email`` (:meth:`token_for`); each one counts in ``issued``. (google-auth sends
``authorized_user`` files to Google's own endpoint whatever their ``token_uri`` says.)
"""

from __future__ import annotations

import base64
import json
import threading
from typing import Any
from urllib.parse import parse_qs

from tests.fakegcp.server import FakeError, Request, Response, Router

_JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class OAuthService:
    def __init__(self, url: str) -> None:
        self.token_uri = f"{url}/token"
        self.issued = 0
        self._lock = threading.Lock()

    def register(self, router: Router) -> None:
        router.add("oauth2", "POST", r"/token", self.token)

    @staticmethod
    def token_for(client_email: str) -> str:
        return f"fake-key-token-{client_email}"

    def token(self, req: Request) -> Response | dict[str, Any]:
        form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        if form.get("grant_type") != _JWT_GRANT or form.get("assertion", "").count(".") != 2:
            raise FakeError(400, "invalid_grant", status="INVALID_ARGUMENT")
        claims = form["assertion"].split(".")[1]
        issuer = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["iss"]
        with self._lock:
            self.issued += 1
        return {
            "access_token": self.token_for(issuer),
            "expires_in": 3599,
            "token_type": "Bearer",
        }
