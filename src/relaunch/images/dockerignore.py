"""Docker's ``.dockerignore`` rules, exactly as moby/patternmatcher applies them.

- A file is read like Docker's ``ignorefile.ReadAll``: a UTF-8 BOM is dropped, lines
  *starting* with ``#`` are comments, whitespace is trimmed, ``!`` marks an exception,
  each pattern is cleaned like Go's ``filepath.Clean`` (so ``foo/`` means ``foo``: a
  trailing slash does NOT restrict a pattern to folders), and a leading ``/`` is dropped.
- ``*`` and ``?`` never cross ``/``; ``**`` crosses any number of folders (also none);
  ``[...]`` is a class; ``\\`` escapes the next character.
- A pattern matches a path when it matches the path or any of its parent folders, and
  the last matching pattern wins (an exception re-includes).

The same matcher reads the ``inputs`` globs of an image.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from relaunch.errors import SpecError

_META = "*?[\\"
_ESCAPE = set(".+()|{}$")


def go_clean(path: str) -> str:
    """Go's ``filepath.Clean`` on a slash path."""
    if not path:
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    cleaned = "/".join(out)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def read_patterns(text: str) -> list[str]:
    """The patterns of a dockerignore file's text (Docker's ``ReadAll``)."""
    patterns: list[str] = []
    for i, raw in enumerate(text.splitlines()):
        line = raw.removeprefix("\ufeff") if i == 0 else raw
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = go_clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        patterns.append("!" + line if invert else line)
    return patterns


def _check_syntax(pattern: str) -> None:
    """Reject what Go's ``filepath.Match`` rejects: a dangling ``\\`` or an unclosed or
    malformed character class."""
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                raise ValueError("the pattern ends with '\\'")
            i += 2
            continue
        if ch == "[":
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            items = 0
            while True:
                if i >= n:
                    raise ValueError("unclosed '['")
                if pattern[i] == "]" and items > 0:
                    break
                _, i = _class_char(pattern, i)
                if i < n and pattern[i] == "-":
                    _, i = _class_char(pattern, i + 1)
                items += 1
            i += 1
            continue
        i += 1


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    if i >= len(pattern) or pattern[i] in "-]":
        raise ValueError("malformed character class")
    if pattern[i] == "\\":
        if i + 1 >= len(pattern):
            raise ValueError("malformed character class")
        return pattern[i + 1], i + 2
    return pattern[i], i + 1


def _compile(pattern: str) -> tuple[str, re.Pattern[str] | None]:
    """moby's ``Pattern.compile``: the match kind (exact, prefix, suffix, regexp) and,
    for regexp, the anchored regex. Go's regexp and Python's agree on what it emits."""
    out = ["^"]
    kind = "exact"
    i, n, first = 0, len(pattern), True
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                if i >= n:
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        out.append(".*")
                        kind = "regexp"
                else:
                    out.append("(.*/)?")
                    kind = "regexp"
                if first:
                    kind = "suffix"
            else:
                out.append("[^/]*")
                kind = "regexp"
        elif ch == "?":
            out.append("[^/]")
            kind = "regexp"
        elif ch in _ESCAPE:
            out.append("\\" + ch)
        elif ch == "\\":
            if i < n:
                out.append(re.escape(pattern[i]))
                i += 1
                kind = "regexp"
            else:
                out.append("\\\\")
        elif ch == "[":
            # Copy the class through: Go and Python read [a-z], [^a] and [\]] alike.
            j = i
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            out.append("[" + pattern[i : j + 1])
            i = j + 1
            kind = "regexp"
        else:
            out.append(re.escape(ch) if ch != "^" else ch)
        first = False
    if kind != "regexp":
        return kind, None
    out.append(r"\Z")
    return kind, re.compile("".join(out))


@dataclass(frozen=True)
class Pattern:
    text: str  # cleaned, without the '!'
    exception: bool
    kind: str  # exact | prefix | suffix | regexp (moby's match types)
    regex: re.Pattern[str] | None
    literal_prefix: str  # the part before the first wildcard: used to prune folders

    def as_regex(self) -> str:
        """The same test as :meth:`match_one`, as a regex (to combine patterns)."""
        if self.kind == "exact":
            return re.escape(self.text) + r"\Z"
        if self.kind == "prefix":
            return re.escape(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            alt = f"|{re.escape(suffix[1:])}\\Z" if suffix[:1] == "/" else ""
            return f"(?s:.*){re.escape(suffix)}\\Z{alt}"
        assert self.regex is not None
        return self.regex.pattern[1:]  # drop the '^': re.match anchors

    def match_one(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix[:1] == "/" and path == suffix[1:])
        assert self.regex is not None
        return self.regex.match(path) is not None

    def matches(self, path: str) -> bool:
        """True when the pattern matches ``path`` or one of its parent folders."""
        if self.match_one(path):
            return True
        parts = path.split("/")
        return any(self.match_one("/".join(parts[:k])) for k in range(1, len(parts)))


def compile_pattern(raw: str, source: str) -> Pattern:
    compiled = _compiled(raw)
    if isinstance(compiled, Pattern):
        return compiled
    message, hint = compiled
    raise SpecError(f"{source}: {message}", hint=hint)


@functools.lru_cache(maxsize=4096)
def _compiled(raw: str) -> Pattern | tuple[str, str]:
    """The pattern, or (error message, hint). Cached: every plan compiles the same
    dockerignore and manifest lines again."""
    exception = raw.startswith("!")
    text = raw[1:] if exception else raw
    if not text:
        return "'!' alone is not a pattern", "name what to re-include"
    text = go_clean(text)
    try:
        _check_syntax(text)
        kind, regex = _compile(text)
    except (ValueError, re.error) as e:
        return f"bad pattern {raw!r}: {e}", "fix the pattern"
    cut = min((text.index(c) for c in _META if c in text), default=len(text))
    return Pattern(text, exception, kind, regex, text[:cut])


class Matcher:
    """An ordered list of patterns: ``excluded(path)`` is Docker's answer for one path."""

    def __init__(self, patterns: Iterable[str], source: str) -> None:
        self.source = source
        self.patterns = [compile_pattern(p, source) for p in patterns]
        self._exceptions = [p for p in self.patterns if p.exception]
        # Without exceptions, "last match wins" is "any pattern matches": one regex.
        self.any_of: re.Pattern[str] | None = None
        if self.patterns and not self._exceptions:
            self.any_of = re.compile("|".join(f"(?:{p.as_regex()})" for p in self.patterns))

    @classmethod
    def from_file(cls, path: Path | None) -> Matcher:
        if path is None:
            return cls([], "(no dockerignore)")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise SpecError(f"cannot read {path}: {e}", hint="check the file") from None
        return cls(read_patterns(text), str(path))

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def excluded(self, path: str) -> bool:
        """Whether the slash path (relative to the context) is excluded."""
        matched = False
        for p in self.patterns:
            if p.exception != matched:
                continue  # last match wins: only a pattern that could flip the answer
            if p.matches(path):
                matched = not p.exception
        return matched

    def can_skip_folder(self, folder: str) -> bool:
        """An excluded folder can be left unread when no exception can match below it."""
        below = folder + "/"
        for p in self._exceptions:
            lit = p.literal_prefix
            if lit.startswith(below) or below.startswith(lit):
                return False
        return True

    def could_match_below(self, folder: str) -> bool:
        """Whether some (non-exception) pattern may match a path under ``folder``: the
        walk for ``inputs`` globs descends only into such folders."""
        below = folder + "/" if folder else ""
        for p in self.patterns:
            if p.exception:
                continue
            lit = p.literal_prefix
            if lit.startswith(below) or below.startswith(lit):
                return True
        return False
