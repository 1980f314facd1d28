"""A plain, fast text table for listings of thousands of rows.

Rich's Table measures every cell through its renderable protocol: ~2 s for 1,000 rows
of `relaunch ps` on this project's reference machine. Listings use this instead:
widths are computed once, the last column wraps to the terminal, and colour is plain
ANSI, only on a terminal.
"""

from __future__ import annotations

import os
import shutil
import sys
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


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    style_of: Callable[[int, str], str | None] | None = None,
    stream: object = None,
) -> str:
    """The table as text. ``style_of(column, value)`` names a colour for a cell."""
    out = stream if stream is not None else sys.stdout
    tty = hasattr(out, "isatty") and out.isatty() and "NO_COLOR" not in os.environ
    width = shutil.get_terminal_size((160, 40)).columns if tty else 10_000
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths[i], len(cell))
    fixed = sum(widths[:-1]) + 2 * (len(headers) - 1)
    last = max(20, width - fixed)
    lines = []

    def line(cells: Sequence[str], header: bool = False) -> str:
        parts = []
        for i, cell in enumerate(cells):
            text = cell if i == len(cells) - 1 else cell.ljust(widths[i])
            if i == len(cells) - 1 and len(text) > last:
                text = text[: last - 1] + "…"
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
