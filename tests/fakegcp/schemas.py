"""Request-body validation against Google's own discovery documents.

google-api-python-client ships the static discovery documents of every API; their
``schemas`` describe each request body field by field. A body is checked the way
Google's JSON front end checks it: unknown fields, wrong JSON types, malformed
int64 / duration / timestamp strings and unknown enum values are rejected with a 400
(``INVALID_ARGUMENT``). Enums are accepted by name or by proto number — the GAPIC
REST transports send integers — and come back as names, so the services only ever
see the canonical form.
"""

from __future__ import annotations

import base64
import functools
import importlib
import json
import re
from pathlib import Path
from typing import Any

from tests.fakegcp.server import FakeError

_DURATION = re.compile(r"^-?\d+(\.\d{1,9})?s$")
_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")
_INT = re.compile(r"^-?\d+$")

# Which proto-plus package defines each API's enums (their numbers are not the
# position in the discovery enum list: Scheduling.Strategy.FLEX_START is 6, not 5).
_PROTO_MODULES = {
    "aiplatform.v1": "google.cloud.aiplatform_v1.types",
    "run.v2": "google.cloud.run_v2.types",
    "cloudbuild.v1": "google.cloud.devtools.cloudbuild_v1.types",
    "secretmanager.v1": "google.cloud.secretmanager_v1.types",
    "logging.v2": "google.cloud.logging_v2.types",
    "compute.v1": "google.cloud.compute_v1.types",
}


@functools.cache
def discovery(name: str) -> dict[str, Any]:
    """The discovery document ``name`` (e.g. ``"aiplatform.v1"``)."""
    import googleapiclient

    path = Path(googleapiclient.__file__).parent / "discovery_cache/documents" / f"{name}.json"
    return json.loads(path.read_text())


@functools.cache
def _enum_numbers(doc: str, names: tuple[str, ...]) -> dict[int, str]:
    """Proto number → name for the enum whose members are exactly ``names``."""
    module = _PROTO_MODULES.get(doc)
    if module:
        import proto

        importlib.import_module(module)
        package = module.rsplit(".", 1)[0]
        for cls in proto.Enum.__subclasses__():
            members = {m.name: int(m.value) for m in cls}  # type: ignore[attr-defined]
            if cls.__module__.startswith(package) and set(members) == set(names):
                return {v: k for k, v in members.items()}
    return dict(enumerate(names))


class _Checker:
    def __init__(self, doc: str) -> None:
        self.doc = doc
        self.schemas: dict[str, Any] = discovery(doc)["schemas"]
        self.errors: list[str] = []

    def bad(self, path: str, value: Any, what: str) -> None:
        shown = json.dumps(value)[:60]
        self.errors.append(f"Invalid value at '{path}' ({what}), {shown}")

    def check(self, schema: dict[str, Any], value: Any, path: str) -> Any:
        if "$ref" in schema:
            schema = self.schemas[schema["$ref"]]
        kind = schema.get("type")
        if kind == "object":
            return self._object(schema, value, path)
        if kind == "array":
            if not isinstance(value, list):
                self.bad(path, value, "list")
                return value
            return [self.check(schema["items"], v, f"{path}[{i}]") for i, v in enumerate(value)]
        if kind == "string":
            return self._string(schema, value, path)
        if kind == "integer":
            ok = (isinstance(value, int) and not isinstance(value, bool)) or (
                isinstance(value, str) and _INT.match(value)
            )
            if not ok:
                self.bad(path, value, schema.get("format", "integer"))
            return value
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                self.bad(path, value, schema.get("format", "number"))
            return value
        if kind == "boolean":
            if not isinstance(value, bool):
                self.bad(path, value, "TYPE_BOOL")
            return value
        return value  # "any": google.protobuf.Value / Struct

    def _object(self, schema: dict[str, Any], value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            self.bad(path, value, schema.get("id", "object"))
            return value
        props: dict[str, Any] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        out: dict[str, Any] = {}
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if key in props:
                out[key] = self.check(props[key], item, where)
            elif isinstance(extra, dict):
                out[key] = self.check(extra, item, where)
            else:
                at = f" at '{path}'" if path else ""
                self.errors.append(
                    f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.'
                )
        return out

    def _string(self, schema: dict[str, Any], value: Any, path: str) -> Any:
        fmt = schema.get("format")
        names = schema.get("enum")
        if names:
            if isinstance(value, int) and not isinstance(value, bool):
                name = _enum_numbers(self.doc, tuple(names)).get(value)
                if name is None:
                    self.bad(path, value, "enum number")
                return name or value
            if value not in names:
                self.bad(path, value, "enum")
            return value
        if fmt in ("int64", "uint64"):
            ok = (isinstance(value, int) and not isinstance(value, bool)) or (
                isinstance(value, str) and _INT.match(value)
            )
            if not ok or (fmt == "uint64" and str(value).startswith("-")):
                self.bad(path, value, fmt)
            return value
        if not isinstance(value, str):
            self.bad(path, value, {"google-duration": "Duration"}.get(fmt or "", "TYPE_STRING"))
            return value
        if fmt == "google-duration" and not _DURATION.match(value):
            self.bad(path, value, "Duration")
        elif fmt in ("google-datetime", "date-time") and not _DATETIME.match(value):
            self.bad(path, value, "Timestamp")
        elif fmt == "byte":
            try:
                base64.b64decode(value.replace("-", "+").replace("_", "/") + "==")
            except ValueError:
                self.bad(path, value, "bytes")
        return value


def validate(doc: str, schema_id: str, body: Any) -> Any:
    """``body`` checked against ``doc``'s schema ``schema_id``, enums as names; else a 400."""
    checker = _Checker(doc)
    normalized = checker.check({"$ref": schema_id}, body, "")
    if checker.errors:
        raise FakeError(400, "\n".join(checker.errors), status="INVALID_ARGUMENT", reason="invalid")
    return normalized
