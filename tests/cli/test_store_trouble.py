"""What one-shot commands say when the store fails or holds damaged objects: one true
line, never a traceback, and what can still be read is shown."""

from __future__ import annotations

import errno
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
