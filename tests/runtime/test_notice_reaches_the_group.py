"""The preemption notice reaches every process of the command, whatever launches it."""

from __future__ import annotations

import importlib.util
import shutil
import sys

import pytest

from tests.runtime.conftest import RuntimeEnv, wait_for


def _launchers(rt: RuntimeEnv) -> dict[str, list[str]]:
    child = rt.child("--steps", "100000", "--every", "1000")
    return {
        # `bash -c` with two commands forks (one command would be exec'd in place)
        "bash -c": ["bash", "-c", " ".join(f"'{a}'" for a in child) + "; echo after"],
        "python -m": [sys.executable, "-m", "tests.runtime.launcher", *child[1:]],
        "torchrun": ["torchrun", "--standalone", "--nproc_per_node=1", *child[1:]],
        "accelerate launch": [
            "accelerate", "launch", "--cpu", "--num_processes=1", "--num_machines=1",
            "--mixed_precision=no", "--dynamo_backend=no", *child[1:],
        ],
    }  # fmt: skip


NEEDS = {"torchrun": "torch", "accelerate launch": "accelerate"}


@pytest.mark.parametrize("launcher", ["bash -c", "python -m", "torchrun", "accelerate launch"])
def test_the_trainer_under_a_launcher_saves_on_the_notice_and_nothing_survives(
    rt: RuntimeEnv, launcher: str
) -> None:
    if launcher in NEEDS and importlib.util.find_spec(NEEDS[launcher]) is None:
        pytest.skip(f"{NEEDS[launcher]} is not installed (relaunch[torch] / [accelerate])")
    command = _launchers(rt)[launcher]
    if shutil.which(command[0]) is None and not command[0].startswith("/"):
        pytest.skip(f"{command[0]} not found")
    attempt = rt.start(1, command, grace_period=60)
    started = wait_for(lambda: rt.marks("start"), 120, "the trainer to start")
    wait_for(lambda: (attempt.rt.root / "scratch-1" / "progress.json").exists(), 60, "progress")
    attempt.notice()
    assert attempt.wait(120) == 143
    # the trainer itself (not only its launcher) got SIGTERM and saved its checkpoint
    terms = rt.marks("term")
    assert set(terms) == set(started), f"{launcher}: {attempt.output()}"
    latest = rt.latest()
    assert (
        latest is not None
        and latest["reported"]
        and latest["step"] == int(rt.marks("saved")[next(iter(terms))])
    )
    assert attempt.result()["reason"] == "preempted"
    assert attempt.group_left() == []


def test_a_trainer_that_ignores_the_notice_is_killed_after_the_grace_period(
    rt: RuntimeEnv,
) -> None:
    child = rt.child("--steps", "100000", "--every", "1000", "--ignore-term")
    command = ["bash", "-c", " ".join(f"'{a}'" for a in child) + "; echo after"]
    attempt = rt.start(1, command, grace_period=1.5)
    wait_for(lambda: rt.marks("start"), 60, "the trainer to start")
    attempt.notice()
    assert attempt.wait(60) == 143
    assert rt.marks("term"), "the trainer never got the notice"
    assert "grace period (1.5s) over" in attempt.output()
    assert attempt.group_left() == []
    assert attempt.result()["reason"] == "preempted"
