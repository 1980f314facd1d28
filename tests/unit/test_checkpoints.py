from __future__ import annotations

import json
from pathlib import Path

import pytest

from relaunch.errors import RelaunchError
from relaunch.runtime.checkpoints import CheckpointSync, Superseded, Unrestorable
from relaunch.runtime.folder import MARKER, FolderNotOurs
from relaunch.store import LocalStore


def _mkdir(folder: Path) -> Path:
    folder.mkdir(parents=True)
    return folder


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
    restored = CheckpointSync(store, "r", 2, dst).restore()
    assert restored is not None and (restored.seq, restored.step) == (3, 30)
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


def _three_checkpoints(store: LocalStore, folder: Path) -> CheckpointSync:
    sync = CheckpointSync(store, "r", 1, folder, keep=3)
    for step in (10, 20, 30):
        _write(folder, "last.pt", f"weights@{step}".encode())
        sync.commit(step, reported=True)
    return sync


def test_restore_makes_the_folder_hold_exactly_the_committed_checkpoint(
    store: LocalStore, tmp_path: Path
) -> None:
    """A resumed attempt on a machine where an earlier attempt of the run left files
    (a newer save never committed, a half-written one, staged links): all gone."""
    _three_checkpoints(store, tmp_path / "a")
    dst = tmp_path / "b"
    assert CheckpointSync(store, "r", 1, dst).restore() is not None  # attempt 1's folder
    _write(dst, "last.pt", b"newer, never committed")
    _write(dst, "step-40.pt.tmp", b"half-written")
    _write(dst, ".relaunch-staged/1/last.pt", b"x")
    restored = CheckpointSync(store, "r", 2, dst).restore()
    assert restored is not None and restored.step == 30 and restored.reported
    assert sorted(p.name for p in dst.rglob("*") if p.name != MARKER) == ["last.pt"]
    assert (dst / "last.pt").read_bytes() == b"weights@30"


def test_a_run_with_nothing_to_restore_starts_from_an_empty_folder_of_its_own(
    store: LocalStore, tmp_path: Path
) -> None:
    dst = tmp_path / "b"
    assert CheckpointSync(store, "fresh", 1, dst).restore() is None  # claims it
    _write(dst, "step-5.pt", b"attempt 1 saved this, never committed")
    assert CheckpointSync(store, "fresh", 2, dst).restore() is None
    assert [p.name for p in dst.iterdir()] == [MARKER]


@pytest.mark.parametrize("committed", [False, True], ids=["first-attempt", "resumed"])
def test_restore_never_deletes_files_relaunch_did_not_put_there(
    store: LocalStore, tmp_path: Path, committed: bool
) -> None:
    """The audit's repro: checkpoints.dir names the project's data folder."""
    if committed:
        _three_checkpoints(store, tmp_path / "a")
    data = tmp_path / "proj" / "data"
    _write(data, "train.csv", b"precious")
    _write(data, ".hidden", b"also the user's")
    with pytest.raises(FolderNotOurs, match=r"data holds files relaunch did not put there"):
        CheckpointSync(store, "r", 2, data).restore()
    assert (data / "train.csv").read_bytes() == b"precious"
    assert sorted(p.name for p in data.iterdir()) == [".hidden", "train.csv"]


def test_restore_never_deletes_another_runs_checkpoint_folder(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dir: ../other`` — outside the working folder — is checked like any other."""
    monkeypatch.chdir(_mkdir(tmp_path / "proj"))
    other = Path("../other")
    assert CheckpointSync(store, "first", 1, other).restore() is None
    _write(tmp_path / "other", "final.pt", b"the first run's model")
    with pytest.raises(FolderNotOurs, match="holds the checkpoint files of run first"):
        CheckpointSync(store, "second", 1, other).restore()
    assert (tmp_path / "other" / "final.pt").read_bytes() == b"the first run's model"


@pytest.mark.parametrize("state", ["SUCCEEDED", "FAILED", "STOPPED"])
def test_the_folder_of_a_run_that_ended_is_taken_by_the_next_run_of_the_job(
    store: LocalStore, tmp_path: Path, state: str
) -> None:
    """The same job run again: the first run's checkpoints are in the store, and its
    folder is the new run's (the first run's files go)."""
    folder = tmp_path / "ckpt"
    assert CheckpointSync(store, "first", 1, folder).restore() is None
    _write(folder, "final.pt", b"the first run's model")
    store.put("runs/first/run.json", json.dumps({"run_id": "first", "state": "RUNNING"}).encode())
    with pytest.raises(FolderNotOurs, match="holds the checkpoint files of run first"):
        CheckpointSync(store, "second", 1, folder).restore()  # not over: refused
    store.put("runs/first/run.json", json.dumps({"run_id": "first", "state": state}).encode())
    assert CheckpointSync(store, "second", 1, folder).restore() is None
    assert [p.name for p in folder.iterdir()] == [MARKER]
    assert json.loads((folder / MARKER).read_text())["run_id"] == "second"
    with pytest.raises(FolderNotOurs, match="holds the checkpoint files of run second"):
        CheckpointSync(store, "third", 1, folder).restore()  # the new owner runs on


def test_unknown_step_stays_unknown(store: LocalStore, tmp_path: Path) -> None:
    src = tmp_path / "a"
    _write(src, "model.bin", b"w")
    CheckpointSync(store, "r", 1, src).commit(None)
    restored = CheckpointSync(store, "r", 2, tmp_path / "b").restore()
    assert restored is not None and restored.step is None and not restored.reported


@pytest.mark.parametrize("damage", ["garbage-latest", "missing-file", "truncated-file"])
def test_an_unrestorable_latest_falls_back_to_the_newest_older_checkpoint(
    store: LocalStore, tmp_path: Path, damage: str
) -> None:
    _three_checkpoints(store, tmp_path / "a")
    if damage == "garbage-latest":
        store.put("runs/r/checkpoints/LATEST", b"\x00not json")
    elif damage == "missing-file":
        store.delete("runs/r/checkpoints/00000003/last.pt")
    else:
        store.put("runs/r/checkpoints/00000003/last.pt", b"weig")
    dst = tmp_path / "b"
    restored = CheckpointSync(store, "r", 2, dst).restore()
    expected = 30 if damage == "garbage-latest" else 20
    assert restored is not None and restored.step == expected and restored.skipped
    assert (dst / "last.pt").read_bytes() == f"weights@{expected}".encode()


def test_no_restorable_checkpoint_is_an_error_saying_why(store: LocalStore, tmp_path: Path) -> None:
    _three_checkpoints(store, tmp_path / "a")
    for seq in (1, 2, 3):
        store.delete(f"runs/r/checkpoints/{seq:08d}/last.pt")
    with pytest.raises(Unrestorable, match="checkpoint 3 cannot be restored"):
        CheckpointSync(store, "r", 2, tmp_path / "b").restore()


def test_a_commit_after_a_garbage_latest_still_moves_forward(
    store: LocalStore, tmp_path: Path
) -> None:
    sync = _three_checkpoints(store, tmp_path / "a")
    store.put("runs/r/checkpoints/LATEST", b"garbage")
    _write(tmp_path / "a", "last.pt", b"weights@40")
    assert sync.commit(40, reported=True) == 4


def test_restore_refuses_to_empty_the_working_folder(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text("precious")
    with pytest.raises(RelaunchError, match="not a folder of its own"):
        CheckpointSync(store, "r", 1, Path(".")).restore()
    assert (tmp_path / "train.py").exists()
