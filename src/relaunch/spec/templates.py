"""Template variables (``{{name}}``, filled when a job is enqueued) and macros
(``${run_id}``…, resolved when an attempt is submitted).

Templates are declared in the document itself, under ``templates:``, with a type and
optional enum/minimum/maximum/default, like W&B Launch's queue template tiles. A value
outside them, or a ``{{name}}`` with no declaration, is an error — never kept as text.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ValidationError, model_validator

from relaunch.errors import SpecError
from relaunch.spec.common import Strict, spec_error

TEMPLATE_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
MACRO_RE = re.compile(r"\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
KNOWN_MACROS = ("run_id", "run_name", "image_uri", "project_name", "entity_name", "attempt")

_SENTINEL = "RELAUNCH-TEMPLATE({})"
_SENTINEL_RE = re.compile(r"RELAUNCH-TEMPLATE\(([A-Za-z0-9_]+)\)")


class TemplateVar(Strict):
    type: Literal["string", "integer", "float", "boolean"] = "string"
    description: str | None = None
    enum: list[str | int | float | bool] | None = None
    minimum: float | None = None
    maximum: float | None = None
    default: str | int | float | bool | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TemplateVar:
        if self.default is not None:
            self.coerce(self.default)
        return self

    def coerce(self, raw: Any) -> str | int | float | bool:
        """``raw`` (from YAML or a ``--set`` string) as this variable's type, in range."""
        value: str | int | float | bool
        try:
            if self.type == "integer":
                if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                    raise ValueError
                value = int(raw)
            elif self.type == "float":
                value = float(raw)
            elif self.type == "boolean":
                if isinstance(raw, bool):
                    value = raw
                elif str(raw).lower() in ("true", "1", "yes"):
                    value = True
                elif str(raw).lower() in ("false", "0", "no"):
                    value = False
                else:
                    raise ValueError
            else:
                value = str(raw)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{raw!r} is not a valid {self.type}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{raw!r} is not a finite number")
        if self.enum is not None and value not in self.enum:
            raise ValueError(f"{value!r} is not one of {self.enum}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                raise ValueError(f"{value} is below the minimum {self.minimum:g}")
            if self.maximum is not None and value > self.maximum:
                raise ValueError(f"{value} is above the maximum {self.maximum:g}")
        return value


def mark_templates(text: str) -> str:
    """Swap ``{{name}}`` for a sentinel so the YAML parses whether or not it was quoted."""
    return TEMPLATE_RE.sub(lambda m: _SENTINEL.format(m.group(1)), text)


def fill_templates(
    doc: Any, declared: Mapping[str, Any], values: Mapping[str, str], source: str
) -> Any:
    """Replace the sentinels in a parsed document with typed, validated values."""
    decls: dict[str, TemplateVar] = {}
    for name, d in declared.items():
        try:
            decls[str(name)] = TemplateVar.model_validate(d)
        except ValidationError as e:
            raise spec_error(f"{source}: templates.{name}", TemplateVar, e) from None
    unknown = set(values) - set(decls)
    if unknown:
        raise SpecError(
            f"{source}: --set {sorted(unknown)[0]}: no such template variable",
            hint=f"declared: {', '.join(sorted(decls)) or 'none'}",
        )
    resolved: dict[str, Any] = {}
    for name, decl in decls.items():
        raw = values.get(name, decl.default)
        if raw is None:
            continue
        try:
            resolved[name] = decl.coerce(raw)
        except ValueError as e:
            raise SpecError(
                f"{source}: template '{name}': {e}", hint=f"pass a valid value with --set {name}=…"
            ) from None

    def fill(node: Any) -> Any:
        if isinstance(node, dict):
            return {fill(k): fill(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fill(v) for v in node]
        if isinstance(node, str) and "RELAUNCH-TEMPLATE(" in node:
            names = _SENTINEL_RE.findall(node)
            for name in names:
                if name not in decls:
                    raise SpecError(
                        f"{source}: {{{{{name}}}}} is used but not declared",
                        hint=f"declare it under templates: {name}: {{type: …}}",
                    )
                if name not in resolved:
                    raise SpecError(
                        f"{source}: template '{name}' has no value",
                        hint=f"give it a default or pass --set {name}=…",
                    )
            whole = _SENTINEL_RE.fullmatch(node)
            if whole:
                return resolved[whole.group(1)]
            return _SENTINEL_RE.sub(lambda m: str(resolved[m.group(1)]), node)
        return node

    return fill(doc)


def check_macros(doc: Any, source: str, env: Mapping[str, str] | None = None) -> None:
    """Every ``${…}`` must be a relaunch macro or a set environment variable."""
    env = os.environ if env is None else env
    for text in _strings(doc):
        for name in MACRO_RE.findall(text):
            if name in KNOWN_MACROS:
                continue
            if not _ENV_NAME.match(name):
                raise SpecError(
                    f"{source}: '${{{name}}}' is not a valid macro",
                    hint=f"macros are {', '.join(KNOWN_MACROS)} or an env variable",
                )
            if name not in env:
                raise SpecError(
                    f"{source}: unknown macro '${{{name}}}': not a relaunch macro and not set "
                    "in the environment",
                    hint=f"use one of {', '.join(KNOWN_MACROS)}, or export {name}",
                )


def resolve_macros(value: str, macros: Mapping[str, str], env: Mapping[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in macros:
            return macros[name]
        if name in env:
            return env[name]
        raise SpecError(
            f"macro '${{{name}}}' has no value where the job is submitted",
            hint=f"export {name} in the agent's environment",
        )

    return MACRO_RE.sub(sub, value)


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in _strings(k) + _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []
