"""A plain, fast text table for listings of thousands of rows.

Rich's Table measures every cell through its renderable protocol: ~2 s for 1,000 rows
of `relaunch ps` on this project's reference machine. Listings use this instead:
widths are computed once, the last column wraps to the terminal, and colour is plain
ANSI, only on a terminal.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import unicodedata
from collections.abc import Callable, Sequence

ANSI = {
    "cyan": "36",
    "green": "32",
    "yellow": "33",
    "red": "31",
    "magenta": "35",
    "bold green": "1;32",
    "bold red": "1;31",
    "bold": "1",
    "dim": "2",
}


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def cell_width(text: str) -> int:
    """Columns ``text`` takes on a terminal: East Asian wide and fullwidth characters
    (CJK, most emoji) take two, combining marks none."""
    if text.isascii():
        return len(text)
    width = 0
    for ch in text:
        if unicodedata.combining(ch) or ch in "\u200b\u200d\ufe0f":
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def _clean(text: str) -> str:
    """One line: a newline or tab in a name would break every row after it."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text) if _CONTROL.search(text) else text


def _pad(text: str, width: int) -> str:
    return text + " " * (width - cell_width(text))


def _cut(text: str, width: int) -> str:
    """``text`` cut to ``width`` columns, ending in '…' when cut."""
    if cell_width(text) <= width:
        return text
    out, used = [], 0
    for ch in text:
        w = cell_width(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    style_of: Callable[[int, str], str | None] | None = None,
    stream: object = None,
    *,
    wrap_last: bool = True,
) -> str:
    """The table as text. ``style_of(column, value)`` names a colour for a cell. On a
    terminal the last column is cut to the width (unless ``wrap_last`` is False); a pipe
    gets whole lines."""
    out = stream if stream is not None else sys.stdout
    tty = hasattr(out, "isatty") and out.isatty() and "NO_COLOR" not in os.environ
    width = shutil.get_terminal_size((160, 40)).columns if tty and wrap_last else 10_000
    rows = [[_clean(str(cell)) for cell in row] for row in rows]
    widths = [cell_width(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths[i], cell_width(cell))
    fixed = sum(widths[:-1]) + 2 * (len(headers) - 1)
    last = max(20, width - fixed)
    lines = []

    def line(cells: Sequence[str], header: bool = False) -> str:
        parts = []
        for i, cell in enumerate(cells):
            text = _cut(cell, last) if i == len(cells) - 1 else _pad(cell, widths[i])
            code = (
                ANSI.get("bold")
                if header
                else (ANSI.get(style_of(i, cell) or "") if style_of else None)
            )
            parts.append(f"\x1b[{code}m{text}\x1b[0m" if tty and code else text)
        return "  ".join(parts).rstrip()

    lines.append(line(headers, header=True))
    lines.extend(line(row) for row in rows)
    return "\n".join(lines)
