"""What becomes LATEST, what a restore gives the command, and the fallbacks."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from relaunch.runtime.checkpoints import CheckpointSync
from relaunch.runtime.folder import MARKER
from tests.runtime.conftest import RuntimeEnv, wait_for


def _state(rt: RuntimeEnv, n: int) -> Path:
    return rt.root / f"scratch-{n}" / "checkpoints" / "state.txt"


def _kill_trainer(rt: RuntimeEnv) -> None:
    for pid in rt.marks("start"):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_slow_save_of_a_reporting_trainer_is_never_committed_half_written(
    rt: RuntimeEnv,
) -> None:
    # saves pause 2 s halfway, far longer than two scans: only reports count
    child = rt.child("--steps", "30", "--every", "5", "--save-time", "2")
    first = rt.start(1, child, sync_interval=0.2)
    wait_for(lambda: (rt.latest() or {}).get("step") == 5, 60, "the first checkpoint")
    wait_for(lambda: _state(rt, 1).read_text().startswith("10 "), 60, "the second save")
    time.sleep(1.0)  # the half-written file sits unchanged across several scans
    _kill_trainer(rt)  # the machine's trainer dies mid-save
    assert first.wait(60) != 0
    latest = rt.latest()
    assert latest is not None and latest["step"] == 5 and latest["reported"]
    second = rt.start(2, child, sync_interval=0.2)
    assert second.wait(120) == 0, second.output()
    resumed = [v for v in rt.marks("start").values() if not v.startswith("0 ")]
    assert resumed == ["5 5 1"]  # resumed from step 5, and RELAUNCH_RESUME_STEP says so


def test_an_unreported_checkpoint_is_not_committed_after_the_command_was_killed(
    rt: RuntimeEnv,
) -> None:
    child = rt.child("--steps", "1000", "--every", "20", "--save-time", "5", "--no-report")
    first = rt.start(1, child, sync_interval=60)
    wait_for(lambda: _state(rt, 1).exists() and not _state(rt, 1).read_text().endswith("\n"),
             60, "a save in progress")  # fmt: skip
    _kill_trainer(rt)
    assert first.wait(60) != 0
    assert rt.latest() is None  # the half-written file is not a checkpoint


def test_an_unreported_checkpoint_has_an_unknown_step_and_resume_says_so(rt: RuntimeEnv) -> None:
    child = rt.child("--steps", "8", "--every", "4", "--no-report")
    assert rt.start(1, child, sync_interval=60).wait(60) == 0  # committed at a clean exit
    latest = rt.latest()
    assert latest is not None and latest["step"] is None and not latest["reported"]
    assert rt.start(2, child, sync_interval=60).wait(60) == 0
    assert "8 - 1" in rt.marks("start").values()  # resumed, RELAUNCH_RESUME_STEP unset
    (event,) = rt.events("checkpoint-restored")
    assert "unknown step" in event["message"]


def _commit(rt: RuntimeEnv, content: str, step: int) -> None:
    folder = rt.root / f"seed-{step}"
    folder.mkdir()
    (folder / "state.txt").write_text(content)
    CheckpointSync(rt.store, rt.run_id, 1, folder, keep=2).commit(step, reported=True)


def test_a_checkpoint_that_makes_the_command_fail_at_once_falls_back_to_the_previous(
    rt: RuntimeEnv,
) -> None:
    _commit(rt, "5 done\n", 5)
    _commit(rt, "10 ", 10)  # the trainer cannot load this one
    attempt = rt.start(2, rt.child("--steps", "12", "--every", "4"))
    assert attempt.wait(120) == 0, attempt.output()
    (event,) = rt.events("checkpoint-fallback")
    assert "failed at once (exit 3) on checkpoint 2 (step 10)" in event["message"]
    assert "from checkpoint 1 (step 5)" in event["message"]
    assert list(rt.marks("start").values()) == ["5 5 1"]  # it ran again from step 5
    assert (rt.latest() or {}).get("step") == 12


def test_when_no_checkpoint_can_be_restored_the_attempt_fails_at_once_saying_why(
    rt: RuntimeEnv,
) -> None:
    _commit(rt, "5 done\n", 5)
    _commit(rt, "10 done\n", 10)
    for seq in (1, 2):
        rt.store.delete(f"runs/r/checkpoints/{seq:08d}/state.txt")
    attempt = rt.start(2, rt.child("--steps", "12"))
    assert attempt.wait(60) == 2
    result = attempt.result()
    assert result["reason"] == "user-error"
    assert "no committed checkpoint can be restored" in result["detail"]
    assert not rt.marks("start")  # the command never ran


OVERWRITER = """
import os, sys, time
from pathlib import Path
from relaunch.runtime import report
folder = Path(os.environ["RELAUNCH_CHECKPOINT_DIR"])
(folder / "last.pt").write_text("reported at step 1")
report(1, checkpoint=True, path="last.pt")
(folder / "last.pt.tmp").write_text("step 2, never reported")  # the next save, at once
os.replace(folder / "last.pt.tmp", folder / "last.pt")
time.sleep(1.5)
"""


def test_a_reported_checkpoint_is_committed_as_it_was_when_reported(rt: RuntimeEnv) -> None:
    import sys

    rt.ckpt_dir = rt.root / "ckpt"  # outside the scratch folder: it stays after the attempt
    attempt = rt.start(1, [sys.executable, "-c", OVERWRITER])
    assert attempt.wait(60) == 0, attempt.output()
    latest = rt.latest()
    assert latest is not None and latest["step"] == 1
    committed = rt.store.get(f"runs/r/checkpoints/{latest['seq']:08d}/last.pt")[0]
    assert committed == b"reported at step 1"
    # the staged links are gone: the folder holds only the trainer's files
    assert sorted(p.name for p in rt.ckpt_dir.iterdir()) == [MARKER, "last.pt"]
