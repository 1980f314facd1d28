"""What one-shot commands say when the store fails or holds damaged objects: one true
line, never a traceback, and what can still be read is shown."""

from __future__ import annotations

import errno
import time
from pathlib import Path

import pytest

from relaunch.store.local import LocalStore
from tests.cli.harness import Project

QUICK = "name: quick\ncommand: [python, -c, 'print(1)']\ncheckpoints: {enabled: false}\n"


def _disk_full(*_args: object) -> tuple[int, Path]:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("command", ["run", "stop"])
def test_a_full_disk_is_one_line_that_promises_no_retry(project: Project, command: str) -> None:
    """`run` and `stop` try once: "relaunch retries meanwhile" would be untrue there."""
    project.write({"job.yaml": QUICK})
    queued = project.relaunch("run", "job.yaml", "--detach")
    assert queued.code == 0, queued.err
    project.monkeypatch.setattr(LocalStore, "_tmpfile", _disk_full)
    argv = ("run", "job.yaml", "--detach") if command == "run" else ("stop", queued.out.strip())
    failed = project.relaunch(*argv)
    assert failed.code != 0
    (line,) = failed.err.strip().splitlines()
    assert "the disk is full: free space there" in line
    assert "retr" not in line, line


def _queued(project: Project) -> tuple[str, Path]:
    project.write({"job.yaml": QUICK})
    queued = project.relaunch("run", "job.yaml", "--detach")
    assert queued.code == 0, queued.err
    return queued.out.strip(), project.root / ".relaunch"


DAMAGED_EVENTS = {
    "cut": b'{"time": 17',
    "garbage": bytes(range(256)),
    "list": b"[]",
    "far": b'{"time": 1e300, "kind": "x", "message": "beyond any clock"}',
    "nan": b'{"time": NaN, "kind": "x", "message": "no time"}',
}


def test_damaged_events_are_shown_in_their_place_not_skipped(project: Project) -> None:
    rid, store = _queued(project)
    events = store / "runs" / rid / "events"
    hour_ago = time.time_ns() - 3600 * 10**9
    for i, (name, data) in enumerate(DAMAGED_EVENTS.items()):
        # Named as relaunch names events: the time they were written, in nanoseconds.
        (events / f"{hour_ago + i:020d}-{name}.json").write_bytes(data)
    shown = project.relaunch("events", rid)
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    damaged = [line for line in lines if "is damaged:" in line]
    assert len(damaged) == len(DAMAGED_EVENTS), shown.out
    for name in DAMAGED_EVENTS:
        assert any(f"-{name}.json is damaged: " in line for line in damaged), name
    # In their place, by the time their keys name: an hour before the run was queued.
    assert lines[: len(damaged)] == damaged and "queued" in lines[-1], shown.out
    as_json = project.relaunch("events", rid, "--json")
    assert as_json.code == 0 and as_json.out.count('"damaged-event"') == len(DAMAGED_EVENTS)
    status = project.relaunch("status", rid)
    assert status.code == 0, status.err
    assert status.out.count("is damaged:") == len(DAMAGED_EVENTS)
