"""What a failed ``docker build`` or ``docker push`` means, read from its output: a
build failure (the Dockerfile; with the failing step's last lines), an engine that does
not answer, a registry that wants credentials, a registry that refuses the push, or a
registry that cannot be reached. Each says in one line what to do."""

from __future__ import annotations

import re

from relaunch.errors import BackendError
from relaunch.images.builders.engine import engine_problem

TAIL_LINES = 15
_STEP = re.compile(r"^#(\d+) ")
_STEP_ERROR = re.compile(r"^#(\d+) ERROR")
_ENGINE = (
    "cannot connect to the docker daemon",
    "is the docker daemon running",
    "error during connect",
)
_AUTH = ("no basic auth credentials", "unauthorized", "authentication required", " 401")
_REFUSED = (
    "denied",
    "forbidden",
    " 403",
    " 405",
    "not allowed",
    "name unknown",
    "not found",
)
_UNREACHABLE = (
    "connection refused",
    "no such host",
    "dial tcp",
    "i/o timeout",
    "timeout",
    "http response to https client",
    "x509",
    "tls handshake",
)
_LAYER = re.compile(r"^[0-9a-f]{12}: ")  # a layer's progress line ("…: Preparing")


class BuildFailed(BackendError):
    """The Dockerfile failed to build. ``tail`` holds the failing step's last lines."""

    def __init__(self, message: str, *, hint: str, tail: list[str]) -> None:
        super().__init__(message, reason="user-error", hint=hint)
        self.tail = tail


def _has(line: str, needles: tuple[str, ...]) -> bool:
    low = line.lower()
    return any(n in low for n in needles)


def _last(lines: list[str], needles: tuple[str, ...]) -> str | None:
    for line in reversed(lines):
        if not _LAYER.match(line) and _has(line, needles):
            return line.strip()
    return None


def failing_step_tail(lines: list[str], limit: int = TAIL_LINES) -> list[str]:
    """The last lines of the step that failed (BuildKit's ``#N`` lines), else the last
    lines of the output."""
    step = None
    for line in reversed(lines):
        if m := _STEP_ERROR.match(line):
            step = m.group(1)
            break
    if step is not None:
        mine = [
            line
            for line in lines
            if (m := _STEP.match(line)) and m.group(1) == step and "sha256:" not in line
        ]
        return mine[-limit:]
    shown = [line for line in lines if line.strip() and not line.startswith("relaunch:")]
    return shown[-limit:]


def _key_line(lines: list[str]) -> str:
    """The summary docker ends a failed command with (its last meaningful line)."""
    for line in reversed(lines):
        text = line.strip()
        if not text or text.startswith(("---", ">", "relaunch:")) or _LAYER.match(text):
            continue
        text = re.sub(r"^#\d+ ", "", text)
        return re.sub(r"^(?:ERROR|error): ", "", text)
    return "no output"


def build_failure(lines: list[str], rc: int, what: str, log: str) -> BackendError:
    """``docker build`` of ``what`` (``name:tag``) exited ``rc`` with ``lines``."""
    if (line := _last(lines, _ENGINE)) is not None:
        return engine_problem(line)
    return BuildFailed(
        f"build of {what} failed (exit {rc}): {_key_line(lines)}",
        hint=f"fix the Dockerfile and build again; full log: {log}",
        tail=failing_step_tail(lines),
    )


def _google_host(host: str) -> bool:
    return host.endswith(("-docker.pkg.dev", "gcr.io"))


def push_failure(lines: list[str], rc: int, uri: str, log: str) -> BackendError:
    """``docker push uri`` exited ``rc`` with ``lines``."""
    host = uri.split("/", 1)[0]
    if (line := _last(lines, _ENGINE)) is not None:
        return engine_problem(line)
    if (line := _last(lines, _AUTH)) is not None:
        fix = (
            f"run `gcloud auth configure-docker {host}`"
            if _google_host(host)
            else f"run `docker login {host}`"
        )
        return BackendError(
            f"the registry {host} wants credentials to push {uri}: {line}",
            reason="permission",
            hint=f"{fix}, then build again",
        )
    if (line := _last(lines, _REFUSED)) is not None:
        fix = (
            "check that the Artifact Registry repository exists and that the account docker "
            "pushes as has roles/artifactregistry.writer on it"
            if _google_host(host)
            else "check that you may push to that repository and that the registry accepts "
            "pushes (not read-only)"
        )
        return BackendError(
            f"the registry {host} refused the push of {uri}: {line}",
            reason="permission",
            hint=fix,
        )
    if (line := _last(lines, _UNREACHABLE)) is not None:
        fix = (
            "Docker speaks plain HTTP only to loopback registries and to those listed in "
            "insecure-registries (/etc/docker/daemon.json): list it there or serve TLS"
            if "https client" in line.lower()
            else "check [image_stack] repository in relaunch.toml and that the registry runs"
        )
        return BackendError(
            f"cannot reach the registry {host} to push {uri}: {line}",
            reason="transient",
            hint=fix,
        )
    return BackendError(
        f"docker push of {uri} failed (exit {rc}): {_key_line(lines)}",
        reason="transient",
        hint=f"see the log {log}",
    )
