"""Running the `relaunch` command in this process, in a fresh project folder, the way a
new user would: no relaunch.toml above it, no store, no Google Cloud credentials."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from relaunch.cli.main import main


@dataclass(frozen=True)
class Link:
    """A file in a case's project that is a symlink to ``target`` (e.g. /dev/zero)."""

    target: str


@dataclass(frozen=True)
class Fifo:
    """A file in a case's project that is a named pipe (opening it blocks until a writer
    comes)."""


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


@dataclass
class Project:
    """A new user's project folder and environment."""

    root: Path
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]
    env: dict[str, str] = field(default_factory=dict)

    def write(self, files: dict[str, str | bytes | Link | Fifo]) -> None:
        for name, content in files.items():
            path = self.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Fifo):
                os.mkfifo(path)
            elif isinstance(content, Link):
                path.symlink_to(content.target)
            elif isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)

    def relaunch(self, *argv: str, env: dict[str, str] | None = None) -> Result:
        self.capsys.readouterr()
        with pytest.MonkeyPatch.context() as mp:
            for name, value in (env or {}).items():
                mp.setenv(name, value)
            try:
                main(list(argv))
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def files(self) -> set[str]:
        """Every path under the project folder (what a command may have written)."""
        return {str(p.relative_to(self.root)) for p in self.root.rglob("*")}


def new_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Project:
    root = tmp_path / "proj"
    root.mkdir()
    monkeypatch.chdir(root)
    for name in list(os.environ):
        if name.startswith(("RELAUNCH_", "GOOGLE_", "CLOUDSDK_")) or name in (
            "STORAGE_EMULATOR_HOST",
            "GCE_METADATA_HOST",
        ):
            monkeypatch.delenv(name)
    # No credentials anywhere: no gcloud config, no metadata server to probe.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "home" / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    from google.auth.compute_engine import _metadata  # read once, at import

    monkeypatch.setattr(_metadata, "_NO_GCE_CHECK", True)
    monkeypatch.setenv("RELAUNCH_SCRATCH_ROOT", str(tmp_path / "scratch"))
    return Project(root, monkeypatch, capsys)
