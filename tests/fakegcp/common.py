"""Small pieces the fake services share: timestamps, ids, pages, filters, container env."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from tests.fakegcp.gcs import rfc3339
from tests.fakegcp.server import FakeError, Request

_ids = itertools.count(int(time.time()) % 100000 * 1000)
_TERM = re.compile(r'^\s*([\w.\-]+)\s*(>=|<=|=|:|>|<)\s*"?([^"]*)"?\s*$')
_COMPARE: dict[str, Callable[[str, str], bool]] = {
    "=": lambda a, b: a == b,
    ":": lambda a, b: b in a,
    # Timestamps compare on their first 19 characters (RFC 3339 to the second).
    ">=": lambda a, b: a[:19] >= b[:19],
    "<=": lambda a, b: a[:19] <= b[:19],
    ">": lambda a, b: a[:19] > b[:19],
    "<": lambda a, b: a[:19] < b[:19],
}


def now() -> str:
    return rfc3339(time.time_ns())


def new_id() -> str:
    """A numeric resource id, unique within this test session."""
    return str(next(_ids))


def page(req: Request, items: Sequence[Any], key: str, default_size: int = 100) -> dict[str, Any]:
    """``{key: items[page], nextPageToken}`` for ``pageSize``/``maxResults`` and ``pageToken``."""
    size = int(req.query.get("pageSize") or req.query.get("maxResults") or default_size)
    start = int(req.query.get("pageToken") or 0)
    out: dict[str, Any] = {}
    if items[start : start + size]:
        out[key] = list(items[start : start + size])
    if start + size < len(items):
        out["nextPageToken"] = str(start + size)
    return out


def matcher(expression: str) -> Callable[[dict[str, Any]], bool]:
    """A predicate for the ``filter=`` subset relaunch uses: ``a.b="v" AND t>="..."``."""
    terms = []
    for part in re.split(r"\s+AND\s+", expression.strip()) if expression.strip() else []:
        match = _TERM.match(part)
        if not match:
            raise FakeError(400, f"Unsupported filter in the fake: {part!r}", reason="invalid")
        terms.append((match.group(1), match.group(2), match.group(3)))

    def lookup(resource: dict[str, Any], path: str) -> Any:
        value: Any = resource
        for piece in path.split("."):
            value = value.get(piece) if isinstance(value, dict) else None
        return value

    def snake_to_camel(path: str) -> str:
        head, *rest = path.split("_")
        return head + "".join(p.title() for p in rest)

    def value(resource: dict[str, Any], path: str) -> str:
        found = lookup(resource, path)
        return str(found if found is not None else lookup(resource, snake_to_camel(path)))

    return lambda r: all(_COMPARE[op](value(r, p), v) for p, op, v in terms)


def container_env(env_list: list[dict[str, Any]] | None) -> dict[str, str]:
    """``[{"name", "value"}]`` (Vertex, Cloud Run) as a dict; secret refs are left out."""
    return {e["name"]: str(e.get("value", "")) for e in env_list or [] if "value" in e}
