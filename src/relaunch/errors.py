"""The error taxonomy of relaunch.

Every error a user can meet is one of these. Each carries a message that says what
happened, where, and what to do next; the CLI prints it on one line (no traceback)
and exits with the class's ``exit_code``.
"""

from __future__ import annotations


class RelaunchError(Exception):
    """Base class. ``hint`` is the 'what to do' part, shown after the message."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class UserInputError(RelaunchError):
    """A mistake in what the user gave us: a spec field, a run id, a file, a flag."""

    exit_code = 2


class SpecError(UserInputError):
    """A job.yaml / relaunch.toml / queue config that does not validate."""


class NotFoundError(UserInputError):
    """A run, attempt, file or object the user named does not exist."""


class MissingDependency(UserInputError):
    """An optional library a store, backend or builder needs is not installed."""


# The roots of the modules the `gcp` extra installs (google-cloud-*, google-auth and
# what they pull in): an import of one that fails means the extra is missing.
_GCP_ROOTS = frozenset({"google", "google_crc32c", "grpc", "proto"})


def gcp_not_installed(module: str) -> MissingDependency:
    """The error for ``module`` of the ``gcp`` extra missing on this host."""
    return MissingDependency(
        f"the Google Cloud client libraries are not installed (no module {module!r})",
        hint="pip install 'relaunch[gcp]' where relaunch runs",
    )


def missing_dependency(e: ModuleNotFoundError) -> MissingDependency | None:
    """The user-facing error for an optional library that failed to import, or None when
    ``e`` is not about one (a bug then, to be shown as such)."""
    name = e.name or ""
    if name.split(".", 1)[0] not in _GCP_ROOTS:
        return None
    return gcp_not_installed(name)


class CredentialsError(UserInputError):
    """No usable Google Cloud credentials where a command needed them."""


_CREDENTIAL_ERRORS = frozenset({"DefaultCredentialsError", "RefreshError"})


def credentials_error(e: BaseException) -> CredentialsError | None:
    """The one-line error for google-auth failing to find or refresh credentials, or None
    when ``e`` is something else. Matched by name: google-auth is imported lazily."""
    if not type(e).__module__.startswith("google.auth") or (
        type(e).__name__ not in _CREDENTIAL_ERRORS
    ):
        return None
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return CredentialsError(
        f"no usable Google Cloud credentials: {first[:200]}",
        hint="run `gcloud auth application-default login`, or set "
        "GOOGLE_APPLICATION_CREDENTIALS; a local store needs none (--store FOLDER)",
    )


class StoreError(RelaunchError):
    """The store failed in a way that is not a precondition (I/O, permission, bucket)."""


class DamagedRecord(RelaunchError):
    """A stored object that cannot be read or validated (truncated, edited by hand, written
    by an incompatible version). It affects only its own run, never an agent."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(
            f"{key} is damaged: {why}",
            hint=f"relaunch cannot manage this run; inspect or delete {key.rsplit('/', 1)[0]}/",
        )
        self.key = key
        self.why = why


class PreconditionFailed(RelaunchError):
    """A create-only or compare-and-swap write lost its race. Callers re-read and decide."""


class ObjectNotFound(RelaunchError):
    """A store key does not exist (internal; user-facing code wraps it in NotFoundError)."""


class BackendError(RelaunchError):
    """A backend call failed. ``reason`` is one of the attempt reasons (DESIGN.md §3)."""

    def __init__(self, message: str, *, reason: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason
