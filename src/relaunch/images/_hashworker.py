"""A cold-hashing worker, run as a script (``python -I -S _hashworker.py``): it imports
nothing from relaunch, so it starts in milliseconds and never re-runs the caller's main.

stdin: NUL-separated file paths. stdout: one line per path, the SHA-256 hex digest or
``!`` and the error.
"""

from __future__ import annotations

import hashlib
import os
import sys

_CHUNK = 1 << 20


def digest(path: bytes) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        while chunk := os.read(fd, _CHUNK):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def main() -> None:
    out = []
    for path in sys.stdin.buffer.read().split(b"\0"):
        if not path:
            continue
        try:
            out.append(digest(path))
        except OSError as e:
            out.append(f"!{e.strerror or e}")
    sys.stdout.write("".join(line + "\n" for line in out))


if __name__ == "__main__":
    main()
