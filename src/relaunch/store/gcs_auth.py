"""Credentials for GCSStore's requests, from google-auth.

- Anywhere: Application Default Credentials (``google.auth.default()``), refreshed by
  google-auth through its urllib3 transport on the store's own connection pool.
- Inside a relaunch GCE VM (``RELAUNCH_ON_GCE=1``, no ``GOOGLE_APPLICATION_CREDENTIALS``),
  where ADC would be the VM's service account anyway: a google-auth ``Credentials``
  whose token comes straight from the metadata server. google-auth's own GCE
  credentials import requests and cryptography (~10 MB in every runtime) to do the
  same GET.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from typing import Any

from relaunch.errors import credentials_error

SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
_TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"


def on_gce_vm(env: Any = os.environ) -> bool:
    """Whether the VM's metadata server is the credential source ADC would pick."""
    return env.get("RELAUNCH_ON_GCE") == "1" and not env.get("GOOGLE_APPLICATION_CREDENTIALS")


def credentials(pool: Any) -> tuple[Any, Any]:
    """``(credentials, request)``: google-auth credentials and the transport request
    google-auth refreshes them with (``pool``: the store's urllib3 PoolManager)."""
    if on_gce_vm():
        return metadata_credentials(pool), None
    import google.auth
    from google.auth.transport.urllib3 import Request

    try:
        found, _ = google.auth.default(scopes=[SCOPE])
    except Exception as e:
        err = credentials_error(e)
        if err is None:
            raise
        raise err from None
    return found, Request(pool)


def metadata_credentials(pool: Any) -> Any:
    """The VM's default service account, its token read from the metadata server."""
    from google.auth import exceptions
    from google.auth.credentials import Credentials

    host = os.environ.get("GCE_METADATA_HOST") or "metadata.google.internal"
    url = f"http://{host}{_TOKEN_PATH}?scopes={SCOPE}"

    class MetadataServerCredentials(Credentials):
        def refresh(self, request: Any) -> None:
            try:
                answer = pool.request(
                    "GET", url, headers={"Metadata-Flavor": "Google"}, timeout=10.0, retries=False
                )
            except Exception as e:  # the metadata server restarts with its host: retried
                raise exceptions.TransportError(f"metadata server: {e}") from None
            if answer.status != 200:
                raise exceptions.RefreshError(
                    f"the metadata server refused a token: {answer.status} "
                    f"{answer.data[:200].decode('utf-8', 'replace')}"
                )
            token = json.loads(answer.data)
            self.token = token["access_token"]
            # naive UTC, as google-auth compares it; refreshed a little early by google-auth
            now = datetime.now(timezone.utc).replace(tzinfo=None)
            self.expiry = now + timedelta(seconds=int(token.get("expires_in", 0)))

    return MetadataServerCredentials()
