"""What one-shot commands say when the store fails or holds damaged objects: one true
line, never a traceback, and what can still be read is shown."""

from __future__ import annotations

import errno
import time
from pathlib import Path

import pytest

from relaunch.runs.repo import RunRepo
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


@pytest.mark.parametrize("damage", ["cut", "gone"])
def test_a_run_whose_record_cannot_be_read_still_shows_its_logs(
    project: Project, damage: str
) -> None:
    """`ps` lists it DAMAGED; its logs are in the store: `logs` shows them, saying why in
    one line on stderr, and finds its attempts by listing the store."""
    rid, store = _queued(project)
    run_dir = store / "runs" / rid
    (run_dir / "logs").mkdir()
    (run_dir / "logs" / "1.log").write_text("first attempt\n")
    (run_dir / "logs" / "2.log").write_text("second attempt\n")
    record = run_dir / "run.json"
    if damage == "cut":
        record.write_bytes(record.read_bytes()[:40])
    else:  # deleted by hand; an agent set the run aside
        record.unlink()
        RunRepo(LocalStore(store)).mark_damaged(rid, "run.json is missing", by="an agent")
    assert "DAMAGED" in project.relaunch("ps").out
    latest = project.relaunch("logs", rid)
    assert (latest.code, latest.out) == (0, "second attempt\n"), latest.err
    (why,) = latest.err.strip().splitlines()
    assert ("is damaged" if damage == "cut" else "is missing") in why
    assert "attempt 2" in why
    first = project.relaunch("logs", rid, "--attempt", "1")
    assert (first.code, first.out) == (0, "first attempt\n"), first.err
    followed = project.relaunch("logs", rid, "-f")
    assert followed.code == 0, followed.err
    assert followed.out == ("--- attempt 1 ---\nfirst attempt\n--- attempt 2 ---\nsecond attempt\n")
    for argv in (("--attempt", "3"), ("--cloud",)):
        refused = project.relaunch("logs", rid, *argv)
        assert refused.code == 2 and "Traceback" not in refused.err
        (line,) = refused.err.strip().splitlines()
        assert "attempts 1, 2" in line, line


def test_logs_of_an_unknown_run_is_still_no_run(project: Project) -> None:
    _queued(project)
    missing = project.relaunch("logs", "no-such-run")
    assert missing.code == 2 and "no run 'no-such-run'" in missing.err
