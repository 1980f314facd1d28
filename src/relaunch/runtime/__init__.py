"""What runs inside the job, around the user's command (DESIGN.md §1, §4).

Trainers import :func:`report` from here; the wrapper itself is ``relaunch-runtime``.
Importing this package loads nothing heavy.
"""

from relaunch.runtime.progress import report

__all__ = ["report"]
