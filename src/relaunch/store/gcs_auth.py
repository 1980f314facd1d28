"""Credentials for GCSStore's requests, from google-auth.

Which source signs the requests is the job's to say, never probed at start-up:

- A user's own credential wins wherever it is: ``GOOGLE_APPLICATION_CREDENTIALS``, or
  gcloud's application-default file (``$CLOUDSDK_CONFIG`` or ``~/.config/gcloud``) —
  through ``google.auth.default()``, as everywhere else.
- Inside a cloud job whose backend says so (``RELAUNCH_CREDENTIALS=metadata-server``:
  Vertex AI custom jobs and relaunch GCE VMs; ``RELAUNCH_ON_GCE=1`` from older agents
  means the same): the machine's service account — on Vertex, the job's — its token
  read from the metadata server into a google-auth ``Credentials``. ADC would pick that
  server there anyway, after a ping, through google-auth's GCE module, which imports
  requests and cryptography (~10 MB in every runtime) to do the same GET.
- Anywhere else (the local backend, a laptop, an agent): Application Default
  Credentials (``google.auth.default()``), refreshed by google-auth through its urllib3
  transport on the store's own connection pool.

A token lives in the credentials object only: never in a message, a record or a log.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
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
    """``(credentials, request)``: google-auth credentials and the transport request
    google-auth refreshes them with (``pool``: the store's urllib3 PoolManager)."""
    if use_metadata_server():
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
    """The machine's service account (on Vertex AI, the job's), its token read from the
    metadata server (``GCE_METADATA_HOST``, the variable google-auth honours, or
    Google's address)."""
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
