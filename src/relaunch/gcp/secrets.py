"""Secret Manager: read one secret version's value (inside a job, at start).

The value goes straight to the caller; nothing here logs it or puts it in an error.
"""

from __future__ import annotations

from relaunch.errors import BackendError, RelaunchError


def access_secret(name: str) -> str:
    """The value of ``projects/P/secrets/S/versions/V`` as text. Raises a
    BackendError naming the secret (never its value), its reason and what to do."""
    from google.api_core import exceptions as gexc

    from relaunch.gcp.clients import secret_manager_client
    from relaunch.gcp.errors import backend_error

    try:
        response = secret_manager_client().access_secret_version(request={"name": name})
    except gexc.NotFound:
        raise BackendError(
            f"secret {name} does not exist",
            reason="user-error",
            hint="create it (gcloud secrets create …) or fix env_from_secret in job.yaml",
        ) from None
    except gexc.GoogleAPICallError as e:
        raise backend_error(e, f"reading secret {name}") from None
    payload = response.payload
    if payload.data_crc32c:
        import google_crc32c

        if google_crc32c.value(payload.data) != payload.data_crc32c:
            raise RelaunchError(
                f"secret {name}: the value arrived corrupted (CRC32C mismatch)",
                hint="retry; this is a transport error",
            )
    return bytes(payload.data).decode("utf-8")
