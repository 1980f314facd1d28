"""Credentials for GCSStore's requests.

Which source signs the requests is the job's to say, never probed at start-up:

- A user's own credential wins wherever it is: ``GOOGLE_APPLICATION_CREDENTIALS``, or
  gcloud's application-default file (``$CLOUDSDK_CONFIG`` or ``~/.config/gcloud``) —
  through ``google.auth.default()``, as everywhere else.
- Inside a cloud job whose backend says so (``RELAUNCH_CREDENTIALS=metadata-server``:
  Vertex AI custom jobs and relaunch GCE VMs; ``RELAUNCH_ON_GCE=1`` from older agents
  means the same): the machine's service account — on Vertex, the job's — its token
  read from the metadata server by :class:`MetadataServerToken`, which imports nothing
  from google-auth. ADC would pick that server there anyway, after a ping, through
  google-auth's GCE module, which imports requests and cryptography to do the same GET
  (a Vertex wrapper 25-33 MB PSS instead of 15: benchmarks/runtime_cost.py).
- Anywhere else (the local backend, a laptop, an agent): Application Default
  Credentials (``google.auth.default()``), refreshed by google-auth through its own
  urllib3 transport, on a small pool of their own: urllib3 is imported there only, where
  google-auth is too. The store's requests go over the standard library's http.client
  (``http_pool.py``) whatever signs them.

A token lives in the credentials object only: never in a message, a record or a log.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from relaunch.errors import CredentialsError, credentials_error

SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
_TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
#: the job environment variable by which a backend names the runtime's credential source
SOURCE_VAR = "RELAUNCH_CREDENTIALS"
#: its one value: the metadata server of the machine the job runs on
METADATA_SERVER = "metadata-server"
_ADC_FILE = "application_default_credentials.json"
#: a token is fetched again this long before it expires (google-auth's margin)
EARLY = 225.0
#: how long google-auth's refresh of an ADC token waits to connect, and for each read:
#: it runs while other threads wait for the token
ADC_TIMEOUT = (10.0, 30.0)
#: what a token may be: printable ASCII without spaces (it goes into an HTTP header)
_TOKEN = re.compile(r"[\x21-\x7e]+")


def user_credential_file(env: Mapping[str, str] = os.environ) -> str | None:
    """The credential file a user provided, which ``google.auth.default()`` would use
    before any metadata server: ``GOOGLE_APPLICATION_CREDENTIALS``, else gcloud's
    application-default file when it exists."""
    if env.get("GOOGLE_APPLICATION_CREDENTIALS"):
        return env["GOOGLE_APPLICATION_CREDENTIALS"]
    config = env.get("CLOUDSDK_CONFIG") or (
        os.path.join(env["HOME"], ".config", "gcloud") if env.get("HOME") else None
    )
    if config and Path(config, _ADC_FILE).is_file():
        return str(Path(config, _ADC_FILE))
    return None


def use_metadata_server(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the store signs with the metadata server's token: the backend said the
    job runs where that server hands out its service account's tokens, and no user
    credential is there to win."""
    source = env.get(SOURCE_VAR, "")
    if source not in ("", METADATA_SERVER):
        raise CredentialsError(
            f"{SOURCE_VAR}={source!r} is not a credential source relaunch knows",
            hint=f"set {SOURCE_VAR}={METADATA_SERVER}, or unset it to use "
            "Application Default Credentials",
        )
    said = source == METADATA_SERVER or env.get("RELAUNCH_ON_GCE") == "1"
    return said and user_credential_file(env) is None


def credentials(pool: Any) -> tuple[Any, Any]:
    """``(credentials, request)``: credentials with google-auth's ``refresh`` and
    ``before_request``, and the transport request they are refreshed with. ``pool``: the
    store's :class:`~relaunch.store.http_pool.HttpPool`, which the metadata server's
    token is fetched over; google-auth's credentials refresh through google-auth's own
    urllib3 transport, on a small pool of their own."""
    if use_metadata_server():
        return MetadataServerToken(pool), None
    import google.auth

    try:
        found, _ = google.auth.default(scopes=[SCOPE])
    except Exception as e:
        err = credentials_error(e)
        if err is None:
            raise
        raise err from None
    import urllib3
    from google.auth.transport.urllib3 import Request

    # a token an hour, one refresh at a time: two connections are plenty
    connect, read = ADC_TIMEOUT
    timeout = urllib3.Timeout(connect=connect, read=read)
    return found, Request(urllib3.PoolManager(maxsize=2, retries=False, timeout=timeout))


def usable(token: object) -> bool:
    """Whether ``token`` can be sent as a bearer token: anything else (a line break from
    a broken token endpoint) would make http.client refuse the header, with the token
    in its message."""
    return isinstance(token, str) and _TOKEN.fullmatch(token) is not None


class MetadataUnreachable(ConnectionError):
    """The metadata server did not answer (it restarts with its host): retried."""


class TokenRefused(Exception):
    """The metadata server answered, without a token."""


def refused(e: BaseException) -> bool:
    """Whether ``e``, raised while getting a token, is a refusal (not worth retrying):
    :class:`TokenRefused`, or google-auth's own errors when google-auth is loaded."""
    if isinstance(e, TokenRefused):
        return True
    gauth = sys.modules.get("google.auth.exceptions")
    return gauth is not None and isinstance(e, gauth.GoogleAuthError)


class MetadataServerToken:
    """The machine's service account (on Vertex AI, the job's) and its access token,
    read from the metadata server (``GCE_METADATA_HOST``, the variable google-auth
    honours, or Google's address) over the store's own connection pool
    (:class:`~relaunch.store.http_pool.HttpPool`, the standard library's http.client).

    The part of google-auth's ``Credentials`` the store uses — ``refresh``,
    ``before_request``, ``token`` — without google-auth itself. The token is sent in
    the ``Authorization`` header and kept nowhere else."""

    def __init__(self, pool: Any, env: Mapping[str, str] = os.environ) -> None:
        host = env.get("GCE_METADATA_HOST") or "metadata.google.internal"
        self._url = f"http://{host}{_TOKEN_PATH}?scopes={SCOPE}"
        self._pool = pool
        self.token: str | None = None
        self._renew_at = 0.0  # time.monotonic() after which the token is fetched again

    @property
    def valid(self) -> bool:
        return self.token is not None and time.monotonic() < self._renew_at

    def refresh(self, request: Any = None) -> None:
        from relaunch.store.http_pool import is_transient

        try:
            answer = self._pool.request(
                "GET", self._url, headers={"Metadata-Flavor": "Google"}, timeout=10.0
            )
        except Exception as e:
            if not is_transient(e):
                raise  # a bug of ours, not the server
            raise MetadataUnreachable(f"metadata server: {type(e).__name__}: {e}") from None
        if answer.status != 200:
            raise TokenRefused(
                f"the metadata server refused a token: {answer.status} "
                f"{answer.data[:200].decode('utf-8', 'replace')}"
            )
        try:
            found = json.loads(answer.data)
            token, lifetime = found["access_token"], float(found.get("expires_in", 0))
        except (ValueError, KeyError, TypeError):
            raise TokenRefused("the metadata server answered no token") from None
        if not usable(token):
            raise TokenRefused(
                "the metadata server answered a token that is not printable ASCII (not shown)"
            )
        self.token = token
        # a short-lived token (the server hands out the one it holds) is used for half its life
        early = EARLY if lifetime > 2 * EARLY else lifetime / 2
        self._renew_at = time.monotonic() + lifetime - early

    def before_request(self, request: Any, method: str, url: str, headers: dict[str, str]) -> None:
        if not self.valid:
            self.refresh(request)
        headers["authorization"] = f"Bearer {self.token}"
