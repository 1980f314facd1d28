"""Just enough Dockerfile reading to find a stack image's parent: ``ARG`` defaults and
``FROM`` references (with ``$VAR`` / ``${VAR}`` / ``${VAR:-default}`` substitution)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-+]([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class FromLine:
    raw: str  # the image reference as written
    resolved: str  # with ARG defaults substituted
    variables: tuple[str, ...]  # the ARGs the reference uses
    line: int


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, instruction) with comments dropped and ``\\`` continuations
    joined."""
    out: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if not buf:
            start = number
        if stripped.endswith("\\"):
            buf.append(stripped[:-1])
            continue
        buf.append(stripped)
        out.append((start, " ".join(buf)))
        buf = []
    if buf:
        out.append((start, " ".join(buf)))
    return out


def _substitute(text: str, defaults: dict[str, str]) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        value = defaults.get(name, "")
        if not value and m.group(2) is not None and "-" in m.group(0):
            return m.group(2)
        return value

    return _VAR.sub(repl, text)


def from_lines(text: str) -> list[FromLine]:
    """Every FROM of a Dockerfile, stage names (``FROM build AS x``) included."""
    defaults: dict[str, str] = {}
    froms: list[FromLine] = []
    for number, line in logical_lines(text):
        word, _, rest = line.partition(" ")
        instruction = word.upper()
        if instruction == "ARG" and not froms:  # ARGs before the first FROM scope FROMs
            for decl in rest.split():
                name, eq, value = decl.partition("=")
                defaults[name] = value.strip("\"'") if eq else defaults.get(name, "")
        elif instruction == "FROM":
            parts = [p for p in rest.split() if not p.startswith("--")]
            if not parts:
                continue
            raw = parts[0]
            variables = tuple(m.group(1) or m.group(3) for m in _VAR.finditer(raw))
            froms.append(FromLine(raw, _substitute(raw, defaults), variables, number))
    return froms


def repository_basename(reference: str) -> str:
    """``host/path/arr-ml-stack:tag@sha256:…`` → ``arr-ml-stack``."""
    ref = reference.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def uses_arg(text: str, name: str) -> bool:
    """Whether the Dockerfile refers to build arg ``name`` (``$NAME`` or ``${NAME…}``)."""
    return any((m.group(1) or m.group(3)) == name for m in _VAR.finditer(text))
