from __future__ import annotations

import os

# Every test checks that no caller changes a record an agent's repo caches (runs/repo.py):
# set before relaunch is imported, and inherited by the agents and CLIs tests spawn.
os.environ.setdefault("RELAUNCH_CHECK_CACHE", "1")

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from relaunch.store import LocalStore, ObjectStore

pytest_plugins = ["tests.fakegcp.fixtures"]


def _gcs_store(tmp: Path, request: pytest.FixtureRequest) -> ObjectStore:
    """A GCSStore on a fresh bucket of the fake cloud (its endpoint is in the environment,
    so processes spawned by the test reach it too)."""
    from relaunch.store.gcs import GCSStore

    fake = request.getfixturevalue("fake_gcp")
    fake.gcs.create_bucket("relaunch-test")
    return GCSStore("gs://relaunch-test/store", retry_initial=0.05)


# Every kind of store runs the same contract tests. A kind is a factory that opens a
# fresh, empty store reachable from other processes by its URL.
STORE_KINDS: dict[str, Callable[[Path, pytest.FixtureRequest], ObjectStore]] = {
    "local": lambda tmp, request: LocalStore(tmp / "store"),
    "gcs": _gcs_store,
}


@pytest.fixture(params=sorted(STORE_KINDS))
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    yield STORE_KINDS[request.param](tmp_path, request)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")
