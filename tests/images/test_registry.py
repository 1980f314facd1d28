"""The registry check: Docker token auth with a Google token, per repository scope."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from relaunch.errors import BackendError
from relaunch.images.registry import Registry, google_access_token

from .fake_registry import GOOGLE_TOKEN, SERVICE, FakeRegistry

HOST = "us-central1-docker.pkg.dev"


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    with FakeRegistry() as reg:
        yield reg


def test_login_exchange_and_one_token_per_repository(registry: FakeRegistry) -> None:
    registry.present.add("proj/repo-a/base:1")
    client = Registry(registry.url, token=lambda: GOOGLE_TOKEN, backoff=0)
    assert client.exists(f"{HOST}/proj/repo-a/base:1")
    assert not client.exists(f"{HOST}/proj/repo-b/trainer:1")  # same host, other scope
    assert not client.exists(f"{HOST}/proj/repo-a/base:2")  # cached token for repo-a
    scopes = [q["scope"] for q in registry.token_requests]
    assert scopes == ["repository:proj/repo-a/base:pull", "repository:proj/repo-b/trainer:pull"]
    assert all(q["service"] == SERVICE for q in registry.token_requests)


def test_a_wrong_google_token_is_a_permission_error(registry: FakeRegistry) -> None:
    client = Registry(registry.url, token=lambda: "not-it", backoff=0)
    with pytest.raises(BackendError) as e:
        client.exists(f"{HOST}/proj/repo/base:1")
    assert e.value.reason == "permission"


def test_5xx_is_retried(registry: FakeRegistry) -> None:
    registry.present.add("proj/repo/base:1")
    registry.fail_next = [503, 502]
    client = Registry(registry.url, token=lambda: GOOGLE_TOKEN, backoff=0)
    assert client.exists(f"{HOST}/proj/repo/base:1")
    registry.fail_next = [503] * 4
    with pytest.raises(BackendError, match="kept failing") as e:
        Registry(registry.url, token=lambda: GOOGLE_TOKEN, retries=3, backoff=0).exists(
            f"{HOST}/proj/repo/base:1"
        )
    assert e.value.reason == "transient"


def test_google_access_token_comes_from_application_default_credentials(
    registry: FakeRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import google.auth

    class Creds:
        token = None

        def refresh(self, request: object) -> None:
            self.token = GOOGLE_TOKEN

    seen: list[list[str]] = []

    def default(scopes: list[str]) -> tuple[Creds, str]:
        seen.append(scopes)
        return Creds(), "proj"

    monkeypatch.setattr(google.auth, "default", default)
    registry.present.add("proj/repo/base:1")
    assert Registry(registry.url, backoff=0).exists(f"{HOST}/proj/repo/base:1")
    assert seen == [["https://www.googleapis.com/auth/cloud-platform"]]
    assert google_access_token() == GOOGLE_TOKEN


def test_a_refused_repository_does_not_block_another_of_the_same_host(
    registry: FakeRegistry,
) -> None:
    registry.present.add("proj/open/base:1")
    calls = {"n": 0}

    def token() -> str:
        calls["n"] += 1
        return "not-it" if calls["n"] == 1 else GOOGLE_TOKEN

    client = Registry(registry.url, token=token, backoff=0)
    with pytest.raises(BackendError):
        client.exists(f"{HOST}/proj/closed/base:1")
    with pytest.raises(BackendError):  # remembered: not asked again
        client.exists(f"{HOST}/proj/closed/trainer:1")
    assert client.exists(f"{HOST}/proj/open/base:1")
    assert calls["n"] == 2


def test_a_loopback_registry_is_asked_over_plain_http(registry: FakeRegistry) -> None:
    """As Docker does: 127.0.0.0/8 is an insecure registry by default, no endpoint set."""
    host = registry.url.removeprefix("http://")
    assert host.startswith("127.0.0.1:")
    registry.present.add("proj/repo/base:1")
    client = Registry(token=lambda: GOOGLE_TOKEN, backoff=0)
    assert client.exists(f"{host}/proj/repo/base:1")
    assert not client.exists(f"{host}/proj/repo/base:2")


def test_a_remote_registry_is_never_asked_over_plain_http() -> None:
    from relaunch.images.registry import is_loopback

    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost:5000")
    assert is_loopback("[::1]:5000") and is_loopback("127.3.2.1")
    assert not is_loopback("10.0.0.1:5000") and not is_loopback("localhost.example.com")
    assert not is_loopback("us-central1-docker.pkg.dev")


def test_an_unreachable_loopback_registry_names_both_schemes_tried() -> None:
    """Nothing listens on the port: the error says http and https were both tried, on
    one line, and what to do — not only the https URL, which reads as if http never was."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: nothing listens there
    client = Registry(token=None, backoff=0, retries=0, timeout=2)
    with pytest.raises(BackendError) as e:
        client.exists(f"127.0.0.1:{port}/relaunch/base:1")
    message = str(e.value)
    assert f"http://127.0.0.1:{port} or https://127.0.0.1:{port}" in message
    assert "start the registry" in message and f"listens on 127.0.0.1:{port}" in message
    assert "\n" not in message
    assert e.value.reason == "transient"
