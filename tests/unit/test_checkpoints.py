from __future__ import annotations

import json
from pathlib import Path

import pytest

from relaunch.runtime.checkpoints import CheckpointSync, Superseded
from relaunch.store import LocalStore


def _write(folder: Path, name: str, data: bytes) -> None:
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def test_commit_restore_roundtrip_and_retention(store: LocalStore, tmp_path: Path) -> None:
    src = tmp_path / "a"
    sync = CheckpointSync(store, "r", 1, src, keep=2)
    assert sync.restore() is None
    for step in (10, 20, 30):
        _write(src, "last.pt", f"weights@{step}".encode())
        _write(src, "sub dir/opt state.bin", b"x" * step)
        assert sync.commit(step) is not None
    assert sync.commit(30) is None  # unchanged: nothing new
    seqs = store.list("runs/r/checkpoints/", delimiter="/").prefixes
    assert [p.rsplit("/", 2)[-2] for p in seqs] == ["00000002", "00000003"]
    dst = tmp_path / "b"
    assert CheckpointSync(store, "r", 2, dst).restore() == 30
    assert (dst / "last.pt").read_bytes() == b"weights@30"
    assert (dst / "sub dir/opt state.bin").read_bytes() == b"x" * 30


def test_latest_is_written_last(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "a"
    sync = CheckpointSync(store, "r", 1, src)
    _write(src, "a.pt", b"1")
    sync.commit(1)
    _write(src, "a.pt", b"2")
    _write(src, "b.pt", b"2")
    real = store.upload_file
    calls = []

    def failing_upload(key: str, path: Path, **kw: object) -> int:
        calls.append(key)
        if len(calls) == 2:
            raise OSError("disk gone")
        return real(key, path, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "upload_file", failing_upload)
    with pytest.raises(OSError):
        sync.commit(2)
    latest = json.loads(store.get("runs/r/checkpoints/LATEST")[0])
    assert latest["step"] == 1  # the half-uploaded checkpoint is invisible


def test_a_stale_attempt_cannot_overwrite_a_newer_checkpoint(
    store: LocalStore, tmp_path: Path
) -> None:
    old = CheckpointSync(store, "r", 1, tmp_path / "old")
    new = CheckpointSync(store, "r", 2, tmp_path / "new")
    _write(tmp_path / "new", "a.pt", b"new")
    new.commit(50)
    _write(tmp_path / "old", "a.pt", b"old")
    with pytest.raises(Superseded):
        old.commit(40)
    assert json.loads(store.get("runs/r/checkpoints/LATEST")[0])["attempt"] == 2


def test_temp_files_are_not_part_of_a_checkpoint(store: LocalStore, tmp_path: Path) -> None:
    src = tmp_path / "a"
    _write(src, "last.pt.tmp", b"half")
    _write(src, ".hidden", b"h")
    sync = CheckpointSync(store, "r", 1, src)
    assert sync.commit(1) is None
