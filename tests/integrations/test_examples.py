"""Each integration's example, end to end on the CPU under the real runtime: preempted
with a notice (nothing redone), then killed without one in the middle of a save, then
run to the end — and its final parameters are identical to an uninterrupted run's."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.runtime.conftest import ROOT, Attempt, RuntimeEnv, wait_for

EXAMPLES = ROOT / "examples"
# name → (needed modules, trainer arguments)
CASES: dict[str, tuple[tuple[str, ...], list[str]]] = {
    "pytorch": (("torch",), ["--steps", "40", "--every", "5", "--step-time", "0.1"]),
    "hf": (("transformers",), ["--steps", "40", "--every", "5", "--step-time", "0.1"]),
    "lightning": (
        ("lightning", "torchdata"),
        ["--steps", "40", "--every", "5", "--step-time", "0.1"],
    ),
    "accelerate": (("accelerate",), ["--steps", "40", "--every", "5", "--step-time", "0.1"]),
}


def _needs(modules: tuple[str, ...]) -> None:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (its relaunch extra)")


def _command(name: str, out: Path, args: list[str]) -> list[str]:
    launcher = [sys.executable]
    if name == "accelerate":  # the seeds' entry point: the notice must cross the launcher
        launcher = [str(Path(sys.executable).with_name("accelerate")), "launch", "--cpu",
                    "--num_processes=1", "--num_machines=1", "--mixed_precision=no",
                    "--dynamo_backend=no"]  # fmt: skip
    return [*launcher, str(EXAMPLES / name / "train.py"), *args, "--out", str(out)]


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != ".relaunch-staged"]
        for f in files:
            try:
                st = Path(root, f).stat()
            except FileNotFoundError:
                continue
            out[str(Path(root, f))] = (st.st_size, st.st_mtime_ns)
    return out


def _step(attempt: Attempt) -> int:
    try:
        data = json.loads((attempt.rt.root / f"scratch-{attempt.n}" / "progress.json").read_text())
    except (OSError, ValueError):
        return -1
    return int(data.get("step") or -1)


@pytest.mark.parametrize("name", sorted(CASES))
def test_two_preemptions_one_mid_save_end_with_the_uninterrupted_parameters(
    rt: RuntimeEnv, name: str
) -> None:
    modules, args = CASES[name]
    _needs(modules)
    env = {**os.environ, "RELAUNCH_CHECKPOINT_DIR": str(rt.root / "ref-ckpt"),
           "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT)}  # fmt: skip
    env.pop("RELAUNCH_PROGRESS_FILE", None)
    ref_out = rt.root / "ref.json"
    subprocess.run(_command(name, ref_out, args), cwd=rt.root, env=env, check=True, timeout=600)
    reference = json.loads(ref_out.read_text())

    out = rt.root / "final.json"
    command = _command(name, out, args)
    settings = {"sync_interval": 30, "grace_period": 60, "keep": 2}
    # 1: the notice, mid-training: the trainer saves and exits; nothing is redone
    first = rt.start(1, command, **settings)
    wait_for(lambda: _step(first) >= 7, 300, "attempt 1 to train")
    first.notice()
    assert first.wait(300) == 143, first.output()
    saved = (rt.latest() or {}).get("step")
    assert saved is not None and saved >= 7, first.output()
    # 2: resumed at exactly that step, then the machine is lost in the middle of a save
    second = rt.start(2, command, **settings)
    wait_for(lambda: _step(second) > saved, 300, "attempt 2 to train")
    assert f"resumed from step {saved}" in second.output() or _step(second) > saved
    folder = rt.root / "scratch-2" / "checkpoints"
    before = _files(folder)
    deadline = time.monotonic() + 300
    while _files(folder) == before and time.monotonic() < deadline:
        time.sleep(0.002)
    second.kill_group()  # no notice: the whole group dies mid-save
    second.wait(60)
    # 3: resumes from a complete checkpoint and finishes
    third = rt.start(3, command, **settings)
    assert third.wait(600) == 0, third.output()
    result = json.loads(out.read_text())
    assert result["step"] == reference["step"]
    assert result["checksum"] == reference["checksum"], third.output()
    resumed = json.loads(rt.store.get("runs/r/checkpoints/LATEST")[0])
    assert resumed["reported"]


def test_the_notice_reaches_the_example_with_no_step_redone(rt: RuntimeEnv) -> None:
    _needs(("torch",))
    out = rt.root / "final.json"
    command = _command("pytorch", out, ["--steps", "30", "--every", "100"])
    first = rt.start(1, command, grace_period=60)
    wait_for(lambda: _step(first) >= 5, 300, "attempt 1 to train")
    first.notice()
    assert first.wait(300) == 143
    last = _step(first)
    assert (rt.latest() or {}).get("step") == last  # saved on the notice: 0 steps redone
    second = rt.start(2, command, grace_period=60)
    assert second.wait(300) == 0
    assert f"resumed from step {last}" in second.output()


def test_every_attempt_continues_the_same_wandb_run_offline(
    rt: RuntimeEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    _needs(("torch", "wandb"))
    monkeypatch.setenv("WANDB_MODE", "offline")  # W&B's server is not reachable here
    monkeypatch.setenv("WANDB_DIR", str(rt.root))
    out = rt.root / "final.json"
    args = ["--steps", "30", "--every", "100", "--step-time", "0.1", "--wandb"]
    first = rt.start(1, _command("pytorch", out, args), grace_period=60)
    wait_for(lambda: _step(first) >= 5, 300, "attempt 1 to train")
    first.notice()
    assert first.wait(300) == 143, first.output()
    assert "notice: saved at step" in first.output()
    # the W&B run was finished (flushed and closed) before the attempt ended
    assert "wandb sync" in first.output().split("notice: saved at step")[1]
    assert rt.start(2, _command("pytorch", out, args), grace_period=60).wait(300) == 0
    runs = sorted(p.name for p in (rt.root / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(name.endswith(f"-{rt.run_id}") for name in runs)
    assert all(list((rt.root / "wandb" / name).glob("*.wandb")) for name in runs)
