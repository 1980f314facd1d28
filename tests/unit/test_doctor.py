"""`relaunch doctor`: the job's watched windows, the store, the cloud settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relaunch.doctor import check_timing
from relaunch.spec.loader import parse_job
from tests.unit.test_spec import _cli

VERTEX = "backend: vertex\nimage: x\nresources: {machine_type: n1-standard-4%s}\n"


def levels(extra: str) -> dict[str, str]:
    spec = parse_job("name: t\ncommand: [x]\n" + extra, "job.yaml")
    return {f.what: f.level for f in check_timing(spec)}


def test_sound_timing_is_ok() -> None:
    assert list(levels("").values()) == ["ok"]


@pytest.mark.parametrize(
    ("extra", "level", "words"),
    [
        ("heartbeat_interval: 60s\nstall_timeout: 90s\n", "fail", "under 3 heartbeats"),
        ("checkpoints: {sync_interval: 10m}\n", "warn", "longer than stall_timeout"),
        (VERTEX % ", provisioning: flex-start, max_wait: 2h" + "startup_timeout: 1h\n",
         "fail", "ends before max_wait 7200s"),
        (VERTEX % "" + "startup_timeout: 1m\n", "warn", "leaves little for provisioning"),
        (VERTEX % "" + "grace_period: 2m\n", "warn", "~30 s a spot VM gets"),
        ("startup_timeout: 0s\n", "fail", "ends before an attempt can write its first"),
        ("startup_timeout: 2s\n", "fail", "startup_timeout 2s ends before"),
    ],
)  # fmt: skip
def test_timing_rules(extra: str, level: str, words: str) -> None:
    found = levels(extra)
    assert any(words in what and lvl == level for what, lvl in found.items()), found


def test_cli_exit_0_when_sound_1_on_a_problem(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text("name: t\ncommand: [python, train.py]\nqueue: q1\n")
    (tmp_path / "train.py").write_text("pass\n")
    (tmp_path / "bad.yaml").write_text("name: t\ncommand: [no-such-xyz]\nstall_timeout: 5s\n")
    store = ["--store", str(tmp_path / "store")]
    (tmp_path / "store").mkdir()
    good = _cli("doctor", "good.yaml", *store, cwd=tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "create-only writes hold" in good.stdout and "no live agent" in good.stdout
    assert "relaunch agent --queue q1" in good.stdout  # the queue named, not QUEUE
    bad = _cli("doctor", "bad.yaml", "--json", *store, cwd=tmp_path)
    assert bad.returncode == 1
    failed = [f for f in json.loads(bad.stdout) if f["level"] == "fail"]
    assert failed and "under 3 heartbeats" in failed[0]["what"] and failed[0]["fix"]
    # what `run` refuses, doctor calls a problem: a program this machine cannot find
    assert "program 'no-such-xyz' is not on the PATH" in failed[1]["what"]
    assert list((tmp_path / "store").rglob("doctor/*")) == []  # the probe is cleaned up


def test_cli_on_a_vertex_job_names_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "v.yaml").write_text("name: t\ncommand: [x]\n" + VERTEX % "")
    result = _cli("doctor", "v.yaml", "--store", str(tmp_path / "s"), cwd=tmp_path)
    assert result.returncode == 1
    assert "which a job in the cloud cannot reach" in result.stdout


def test_cli_on_a_store_that_does_not_exist_says_so_and_makes_none(tmp_path: Path) -> None:
    typo = tmp_path / "stroe"
    result = _cli("doctor", "--store", str(typo), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr  # a new project's, maybe
    assert f"store {typo} does not exist yet" in result.stdout
    assert not typo.exists()
