"""The runtime's loop sleeps until something happens, and each thing that must wake it
does so at once: the command's exit, a signal (even one the kernel hands to another
thread), news from another thread, and a progress report from the trainer.

Each wait is given a minute; 'at once' is asserted as well under half of that, so a
loaded machine never fails these, and a loop that slept through the event always does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaunch.runtime.waits import Wakeups

LONG = 60.0


@pytest.fixture
def wakeups(tmp_path: Path) -> Iterator[Wakeups]:
    w = Wakeups(tmp_path)
    yield w
    w.close()


def waited(wakeups: Wakeups) -> float:
    started = time.monotonic()
    wakeups.wait(LONG)
    return time.monotonic() - started


def later(seconds: float, action: object) -> threading.Timer:
    timer = threading.Timer(seconds, action)  # type: ignore[arg-type]
    timer.start()
    return timer


def test_nothing_due_means_no_wake(wakeups: Wakeups) -> None:
    started = time.monotonic()
    wakeups.wait(0.3)
    assert time.monotonic() - started >= 0.29


def test_the_command_exiting_ends_the_wait(wakeups: Wakeups) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    wakeups.watch(child.pid)
    assert wakeups.precise
    assert waited(wakeups) < LONG / 2
    assert child.wait(timeout=LONG) == 0


def test_another_thread_ends_the_wait(wakeups: Wakeups) -> None:
    later(0.3, wakeups.wake)
    assert waited(wakeups) < LONG / 2
    later(0.3, wakeups.wake)  # and again: the first wake was consumed
    assert waited(wakeups) < LONG / 2


def test_a_progress_report_ends_the_wait(wakeups: Wakeups, tmp_path: Path) -> None:
    def report() -> None:  # as relaunch.runtime.report writes it: a temp file, renamed
        tmp = tmp_path / "progress.json.tmp"
        tmp.write_text(json.dumps({"step": 5, "checkpoint_step": 5}))
        os.replace(tmp, tmp_path / "progress.json")

    later(0.3, report)
    started = time.monotonic()
    while not (tmp_path / "progress.json").exists():  # the temp file's close wakes it too
        wakeups.wait(LONG)
        assert time.monotonic() - started < LONG / 2


def test_a_signal_on_another_thread_ends_the_wait(wakeups: Wakeups) -> None:
    """The kernel may run a process's signal on any thread; Python runs the handler only
    in the main thread, so without the wakeup fd the loop would sleep on (no notice)."""
    got: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: got.append(signum))
    try:
        wakeups.catch_signals()
        # The timer's thread signals itself: the signal lands on a thread that is not
        # the one waiting.
        later(0.3, lambda: signal.pthread_kill(threading.get_ident(), signal.SIGUSR1))
        assert waited(wakeups) < LONG / 2
        assert got == [signal.SIGUSR1]  # and the handler ran
    finally:
        signal.signal(signal.SIGUSR1, previous)
