"""The rule of a name a user gives (a job's, a project's): one line of printable text.
The models (``spec/job.py``, ``spec/project.py``) and the project file's quick check
(``spec/vouch.py``) apply the same functions; each returns its value or raises
ValueError saying what is wrong.

Standard library only.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_one_line(v: str) -> str:
    """No newline, tab or other control character (it would break tables and labels)."""
    if _CONTROL.search(v):
        raise ValueError("a name is one line of printable text (no newline or tab)")
    return v


def check_name(v: str) -> str:
    """One line, and not blank."""
    check_one_line(v)
    if not v.strip():
        raise ValueError("a name cannot be blank")
    return v
