from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.harness import Project, new_project


@pytest.fixture
def project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Project:
    """A new user's project folder (cwd) with no store, no relaunch.toml and no cloud
    credentials."""
    return new_project(tmp_path, monkeypatch, capsys)
