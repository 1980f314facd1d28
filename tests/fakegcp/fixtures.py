"""pytest fixture ``fake_gcp``: a started FakeGCP with the environment pointing at it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests.fakegcp.fake import FakeGCP

T = TypeVar("T")


@pytest.fixture
def fake_gcp(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeGCP]:
    """A fresh fake cloud per test. ``RELAUNCH_<API>_ENDPOINT`` (and
    ``STORAGE_EMULATOR_HOST``) are set for this process and every child it starts;
    teardown stops the server and kills every workload it ran.

    Parametrize it indirectly with ``{"latency_ms": 20}`` (and ``"latency_api":
    "storage"``) to add that much to every request; ``FAKEGCP_LATENCY_MS`` does the same
    for a whole session."""
    params = dict(getattr(request, "param", None) or {})
    fake = FakeGCP(tmp_path / "fakegcp", **params)
    for key, value in fake.env().items():
        monkeypatch.setenv(key, value)
    with fake:
        yield fake


def wait_until(predicate: Callable[[], T | None], timeout: float = 60.0, every: float = 0.02) -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``
    (generous: a loaded CI machine is slow, and only a failing test waits that long)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(every)
