"""Google Cloud errors → the attempt reasons of DESIGN.md §3, with a note on what to fix.

Google reports the same kind of failure in several shapes: an HTTP status on the
call (``google.api_core.exceptions``), an error inside a polled compute operation
(``ZONE_RESOURCE_POOL_EXHAUSTED``, ``QUOTA_EXCEEDED``), or a ``google.rpc.Status`` on a
finished Vertex job. Each shape is reduced here to (status, codes, message) and
classified by one function, so every backend maps them the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from relaunch.errors import BackendError
from relaunch.states import REASON_NOTES, Reason

_NO_CAPACITY = re.compile(
    r"ZONE_RESOURCE_POOL_EXHAUSTED|STOCKOUT|does not have enough resources|"
    r"resources are insufficient|currently unavailable in the .* zone",
    re.IGNORECASE,
)
_PREEMPTED = re.compile(r"\bpreempted\b|compute\.instances\.preempted", re.IGNORECASE)
_QUOTA = re.compile(r"QUOTA_EXCEEDED|quotaExceeded|quota exceeded|exceed\w* (the )?quota", re.I)
_RATE = re.compile(r"rateLimitExceeded|rate limit|per minute|per second|too many requests", re.I)
_IMAGE = re.compile(
    r"ErrImagePull|ImagePullBackOff|failed to pull|pull access denied|manifest unknown|"
    r"image .*not found|unable to pull",
    re.IGNORECASE,
)
_REQUEST_PREFIX = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) \S+: ")
_PERMISSION_NAME = re.compile(r"\b([a-z]+)\.[a-zA-Z]+\.[a-zA-Z]+\b")
_ROLES = {
    "aiplatform": "roles/aiplatform.user",
    "storage": "roles/storage.objectAdmin",
    "compute": "roles/compute.instanceAdmin.v1",
    "cloudbuild": "roles/cloudbuild.builds.editor",
    "run": "roles/run.developer",
    "secretmanager": "roles/secretmanager.secretAccessor",
    "logging": "roles/logging.viewer",
    "iam": "roles/iam.serviceAccountUser",
    "artifactregistry": "roles/artifactregistry.reader",
}
# google.rpc.Code values that Vertex puts in a failed job's ``error.code``.
_RPC_HTTP = {1: 499, 3: 400, 4: 504, 5: 404, 7: 403, 8: 429, 13: 500, 14: 503, 16: 401}


def classify(status: int | None, message: str = "", codes: Iterable[str] = ()) -> Reason:
    """The reason for a failure with HTTP ``status``, error ``codes`` and ``message``."""
    text = " ".join([*codes, message])
    if _PREEMPTED.search(text):
        return Reason.PREEMPTED
    if _NO_CAPACITY.search(text):
        return Reason.NO_CAPACITY
    if _IMAGE.search(text):
        return Reason.IMAGE_PULL
    if _QUOTA.search(text) and not _RATE.search(text):
        return Reason.QUOTA
    if status in (401, 403):
        return Reason.PERMISSION
    if status is None or status == 429 or status >= 500:
        return Reason.TRANSIENT
    return Reason.USER_ERROR


def classify_rpc_status(code: int, message: str = "") -> Reason:
    """A ``google.rpc.Status`` (e.g. a failed CustomJob's ``error``)."""
    return classify(_RPC_HTTP.get(code, 400 if code else None), message)


def classify_operation_errors(errors: Iterable[tuple[str, str]]) -> Reason:
    """A compute operation's ``error.errors`` as ``(code, message)`` pairs."""
    pairs = list(errors)
    codes = [c for c, _ in pairs]
    message = " ".join(m for _, m in pairs)
    if any(c in ("PERMISSION_DENIED", "FORBIDDEN") for c in codes):
        return classify(403, message, codes)
    return classify(400, message, codes) if pairs else Reason.TRANSIENT


def exception_parts(exc: BaseException) -> tuple[int | None, str, list[str]]:
    """(HTTP status, message, error codes) of a google.api_core or requests error."""
    status = getattr(exc, "code", None)
    if not isinstance(status, int):
        status = getattr(getattr(exc, "response", None), "status_code", None)
    message = str(getattr(exc, "message", None) or exc)
    message = _REQUEST_PREFIX.sub("", message)  # "GET https://…?…: " says nothing to a user
    codes: list[str] = []
    for err in getattr(exc, "errors", None) or []:
        # JSON errors are dicts; a compute operation's errors are proto messages.
        get = err.get if isinstance(err, dict) else lambda k, e=err: getattr(e, k, None)
        codes.extend(str(get(k)) for k in ("reason", "code") if get(k))
        if get("message") and str(get("message")) not in message:
            message = f"{message} {get('message')}"
    reason = getattr(exc, "reason", None)
    if reason:
        codes.append(str(reason))
    return status if isinstance(status, int) else None, message, codes


def classify_exception(exc: BaseException) -> Reason:
    status, message, codes = exception_parts(exc)
    return classify(status, message, codes)


def note_for(reason: Reason, message: str = "") -> str:
    """What the user should do, naming the missing role when the message names a permission."""
    if reason is Reason.PERMISSION:
        match = _PERMISSION_NAME.search(message)
        role = _ROLES.get(match.group(1)) if match else None
        if match and role:
            return f"grant the caller's service account {role} (missing {match.group(0)})"
    return REASON_NOTES[reason]


def backend_error(exc: BaseException, where: str) -> BackendError:
    """A BackendError for ``exc``, raised while doing ``where`` (e.g. 'creating the CustomJob')."""
    status, message, codes = exception_parts(exc)
    reason = classify(status, message, codes)
    first = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
    return BackendError(
        f"{where} failed: {first}", reason=reason.value, hint=note_for(reason, message)
    )
