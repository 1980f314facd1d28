"""pytest fixture ``fake_gcp``: a started FakeGCP with the environment pointing at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.fakegcp.fake import FakeGCP


@pytest.fixture
def fake_gcp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGCP]:
    """A fresh fake cloud per test. ``RELAUNCH_<API>_ENDPOINT`` (and
    ``STORAGE_EMULATOR_HOST``) are set for this process and every child it starts;
    teardown stops the server and kills every workload it ran."""
    fake = FakeGCP(tmp_path / "fakegcp")
    for key, value in fake.env().items():
        monkeypatch.setenv(key, value)
    with fake:
        yield fake
