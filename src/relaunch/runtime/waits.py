"""Sleeping until something is due: the runtime's loop wakes when the command exits, a
signal arrives, another thread has news (a fatal line, a GCE preemption notice), the
trainer writes its progress file, or the next scheduled thing (heartbeat, log upload,
checkpoint scan, the end of a grace period) comes — not ten times a second.

- A self-pipe, also registered with :func:`signal.set_wakeup_fd`, so a signal that
  lands on another thread still ends the wait at once.
- A pidfd of the command (Linux ≥ 5.3), readable when it exits.
- inotify on the progress file's folder (through libc), for checkpoint reports.

Where the kernel lacks pidfd or inotify, :attr:`Wakeups.precise` is False and the caller
wakes every ``TICK`` instead, as before. Standard library only.
"""

from __future__ import annotations

import os
import select
import signal
from pathlib import Path

TICK = 0.1  # the polling period where the kernel cannot tell us
_IN_CLOSE_WRITE = 0x008
_IN_MOVED_TO = 0x080
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = 0o2000000


def _inotify(folder: Path) -> int | None:
    """An inotify fd watching files written or renamed into ``folder``, or None."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd = int(libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC))
        if fd < 0:
            return None
        if libc.inotify_add_watch(fd, os.fsencode(folder), _IN_CLOSE_WRITE | _IN_MOVED_TO) < 0:
            os.close(fd)
            return None
        return fd
    except (OSError, AttributeError):
        return None


class Wakeups:
    """What the runtime's loop waits on. :meth:`wake` may be called from any thread
    (and from a signal handler); :meth:`wait` only from the loop's thread."""

    def __init__(self, folder: Path) -> None:
        self._r, self._w = os.pipe()
        for fd in (self._r, self._w):
            os.set_blocking(fd, False)
            os.set_inheritable(fd, False)
        self._notify = _inotify(folder)
        self._pidfd: int | None = None
        self._signals = False

    @property
    def precise(self) -> bool:
        """Whether a child's exit and a progress report wake the loop by themselves."""
        return self._notify is not None and self._pidfd is not None

    def catch_signals(self) -> None:
        """Make every signal with a Python handler end the wait (main thread only)."""
        signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        self._signals = True

    def watch(self, pid: int) -> None:
        """Wake when process ``pid`` (a child of ours) exits."""
        self.unwatch()
        try:
            self._pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self._pidfd = None

    def unwatch(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def wake(self) -> None:
        if self._w < 0:
            return  # closed: its number may be another file's by now
        try:
            os.write(self._w, b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full: the loop wakes anyway

    def wait(self, timeout: float) -> None:
        """Return after ``timeout`` seconds or as soon as something happened."""
        fds = [self._r]
        if self._notify is not None:
            fds.append(self._notify)
        if self._pidfd is not None:
            fds.append(self._pidfd)
        ready, _, _ = select.select(fds, [], [], max(0.0, timeout))
        for fd in ready:
            if fd != self._pidfd:  # a pidfd stays readable: the caller reaps the child
                self._drain(fd)

    @staticmethod
    def _drain(fd: int) -> None:
        try:
            while os.read(fd, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        if self._signals:
            signal.set_wakeup_fd(-1)
            self._signals = False
        self.unwatch()
        for fd in (self._r, self._w, self._notify):
            if fd is not None and fd >= 0:
                os.close(fd)
        self._r = self._w = -1
        self._notify = None
