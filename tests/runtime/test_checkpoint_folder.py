"""The job's own checkpoint folder (``checkpoints.dir``): what the runtime may delete
in it, and exact resume from it on a machine where an earlier attempt left files."""

from __future__ import annotations

import os
import signal

from relaunch.runtime.folder import MARKER
from tests.runtime.conftest import RuntimeEnv, wait_for


def test_a_folder_with_the_users_files_is_refused_and_left_as_it_was(rt: RuntimeEnv) -> None:
    """The audit's repro, on the first attempt (nothing to restore)."""
    rt.ckpt_dir = rt.root / "proj" / "data"
    rt.ckpt_dir.mkdir(parents=True)
    (rt.ckpt_dir / "train.csv").write_text("precious\n")
    attempt = rt.start(1, rt.child("--steps", "5"))
    assert attempt.wait(60) == 2, attempt.output()
    result = attempt.result()
    assert result["reason"] == "user-error"
    assert "holds files relaunch did not put there (train.csv)" in result["detail"]
    assert "nothing was deleted" in result["detail"]
    assert sorted(p.name for p in rt.ckpt_dir.iterdir()) == ["train.csv"]
    assert (rt.ckpt_dir / "train.csv").read_text() == "precious\n"
    assert not rt.marks("start")  # the command never ran


def test_a_resumed_attempt_on_the_same_machine_starts_from_exactly_the_checkpoint(
    rt: RuntimeEnv,
) -> None:
    """Attempt 1 dies in the middle of a save into the job's own folder; attempt 2, on
    the same machine and folder, must not see that half-written file, nor the staged
    links, nor a file the trainer wrote and never reported."""
    rt.ckpt_dir = rt.root / "ckpt"
    state = rt.ckpt_dir / "state.txt"
    child = rt.child("--steps", "30", "--every", "5", "--save-time", "2")
    first = rt.start(1, child, sync_interval=0.2)
    wait_for(lambda: (rt.latest() or {}).get("step") == 5, 60, "the first checkpoint")
    wait_for(lambda: state.read_text().startswith("10 "), 60, "the second save")
    (rt.ckpt_dir / "scratch-notes.txt").write_text("written by the run, never committed")
    for pid in rt.marks("start"):
        os.kill(pid, signal.SIGKILL)  # the machine's trainer dies mid-save
    assert first.wait(60) != 0
    assert state.read_text() == "10 "  # the stale, half-written save is still there
    second = rt.start(2, child, sync_interval=0.2)
    assert second.wait(120) == 0, second.output()
    resumed = [v for v in rt.marks("start").values() if not v.startswith("0 ")]
    assert resumed == ["5 5 1"]  # from the committed step 5, not the torn step 10
    assert not (rt.ckpt_dir / "scratch-notes.txt").exists()
    assert (rt.ckpt_dir / MARKER).exists()
    assert state.read_text() == "30 done\n"  # the job's own folder is kept after the run
