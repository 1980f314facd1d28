"""Secret values for the command's environment, fetched inside the job from references.

A job spec holds only references (``projects/P/secrets/S[/versions/V]`` or
``env:VAR``); the values are read here, at start, and go only into the command's
environment — never into a stored record, an event, a log line or a command line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from relaunch.errors import RelaunchError

MASK = b"[secret]"


class Redactor:
    """Replaces every secret value in a line of output with ``[secret]`` — so a trainer
    that prints its token leaves it in no log, last line or result."""

    def __init__(self, values: Iterable[str]) -> None:
        # Longest first, so a secret containing another is masked whole; very short
        # values would mask ordinary text and are not secrets worth the name.
        self.values = sorted({v.encode() for v in values if len(v) >= 4}, key=len, reverse=True)

    def __call__(self, line: bytes) -> bytes:
        for value in self.values:
            line = line.replace(value, MASK)
        return line


def resolve_secrets(refs: dict[str, str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, ref in refs.items():
        if ref.startswith("env:"):
            var = ref[len("env:") :]
            if var not in os.environ:
                raise RelaunchError(
                    f"secret {name}: environment variable {var} is not set where the job runs",
                    hint=f"export {var} in the agent's environment",
                )
            values[name] = os.environ[var]
        else:
            values[name] = _secret_manager(name, ref)
    return values


def _secret_manager(name: str, ref: str) -> str:
    try:
        from relaunch.gcp.secrets import access_secret  # lazy: google-cloud-secret-manager
    except ImportError:
        raise RelaunchError(
            f"secret {name}: {ref} needs Secret Manager support",
            hint="install relaunch[gcp] in the job's image",
        ) from None
    return access_secret(ref if "/versions/" in ref else f"{ref}/versions/latest")
