"""Endpoint resolution and error classification (no network)."""

from __future__ import annotations

import pytest

from relaunch.errors import UserInputError
from relaunch.gcp.endpoints import endpoint_env_var, is_local_emulator, resolve_endpoint
from relaunch.gcp.errors import classify, classify_operation_errors, classify_rpc_status, note_for
from relaunch.states import Reason


def test_env_wins_over_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELAUNCH_COMPUTE_ENDPOINT", raising=False)
    assert resolve_endpoint("compute") is None
    assert (
        resolve_endpoint("compute", {"compute": "https://private:8443/"}) == "https://private:8443"
    )
    monkeypatch.setenv(endpoint_env_var("compute"), "http://127.0.0.1:9")
    assert resolve_endpoint("compute", {"compute": "https://private"}) == "http://127.0.0.1:9"
    with pytest.raises(UserInputError):
        resolve_endpoint("nope")
    monkeypatch.setenv(endpoint_env_var("compute"), "127.0.0.1:9")
    with pytest.raises(UserInputError, match="RELAUNCH_COMPUTE_ENDPOINT"):
        resolve_endpoint("compute")


def test_only_plain_http_loopback_is_an_emulator() -> None:
    assert is_local_emulator("http://127.0.0.1:8080")
    assert is_local_emulator("http://localhost:1")
    assert not is_local_emulator("https://127.0.0.1:8080")
    assert not is_local_emulator("http://10.0.0.5:80")
    assert not is_local_emulator(None)


@pytest.mark.parametrize(
    ("status", "message", "codes", "reason"),
    [
        (503, "", ["ZONE_RESOURCE_POOL_EXHAUSTED"], Reason.NO_CAPACITY),
        (403, "Quota 'NVIDIA_T4_GPUS' exceeded.  Limit: 0.0", ["quotaExceeded"], Reason.QUOTA),
        (429, "Quota exceeded for quota metric 'Requests' per minute", [], Reason.TRANSIENT),
        (403, "Permission 'compute.instances.create' denied", [], Reason.PERMISSION),
        (503, "backend error", [], Reason.TRANSIENT),
        (400, "Unable to pull image us-docker.pkg.dev/x: manifest unknown", [], Reason.IMAGE_PULL),
        (400, "Invalid value at 'x'", [], Reason.USER_ERROR),
        (None, "connection reset", [], Reason.TRANSIENT),
    ],
)
def test_classify(status: int | None, message: str, codes: list[str], reason: Reason) -> None:
    assert classify(status, message, codes) is reason


def test_classify_other_shapes() -> None:
    assert classify_rpc_status(8, "Resources are insufficient in region") is Reason.NO_CAPACITY
    assert classify_rpc_status(14, "The replica workerpool0-0 was preempted") is Reason.PREEMPTED
    assert classify_operation_errors([("QUOTA_EXCEEDED", "Quota 'CPUS' exceeded")]) is Reason.QUOTA
    note = note_for(Reason.PERMISSION, "Permission 'aiplatform.customJobs.create' denied")
    assert "roles/aiplatform.user" in note


def test_importing_gcp_modules_loads_no_google_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys, relaunch.gcp.clients, relaunch.gcp.errors, relaunch.store.gcs;"
        "print(any(m.startswith('google.cloud.') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
