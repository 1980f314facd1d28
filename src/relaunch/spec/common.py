"""Building blocks shared by the spec models: strict base model, durations, errors."""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from relaunch.errors import SpecError
from relaunch.spec.durations import parse_duration

Duration = Annotated[float, BeforeValidator(parse_duration)]


# Set by relaunch in every attempt (DESIGN.md §4), with the value a job may repeat (as
# W&B Launch queue configs do); any other value would be replaced without a word.
RESERVED_ENV = {"WANDB_RUN_ID": "${run_id}", "WANDB_RESUME": "allow"}


def check_env_name_free(name: str, value: str | None = None) -> str:
    """``name`` unless relaunch sets that variable itself (then a ValueError that says so)."""
    if name in RESERVED_ENV and value == RESERVED_ENV[name]:
        return name
    if name.startswith("RELAUNCH_") or name in RESERVED_ENV:
        raise ValueError(
            f"{name} is reserved: relaunch sets it in every attempt (the run id, attempt, "
            "store…); remove it from the job"
        )
    return name


# Google Cloud names: checked by the job spec and the vertex/gce sections alike.
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


def check_region(region: str) -> str:
    if not _REGION.match(region):
        raise ValueError(f"{region!r} is not a Google Cloud region (e.g. us-central1)")
    return region


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """Google's label rules: ≤ 64 labels; keys start with a lowercase letter; keys and
    values ≤ 63 of lowercase letters, digits, '_' and '-'."""
    if len(labels) > 62:  # relaunch adds two of its own
        raise ValueError("at most 62 labels (relaunch adds relaunch-run-id, relaunch-attempt)")
    for key, value in labels.items():
        if not _LABEL_KEY.match(key):
            raise ValueError(
                f"label key {key!r}: 1-63 of a-z, 0-9, '_', '-', starting with a letter"
            )
        if not _LABEL_VALUE.match(value):
            raise ValueError(f"label {key}: value {value!r}: 0-63 of a-z, 0-9, '_', '-'")
        if key.startswith("relaunch-"):
            raise ValueError(f"label key {key!r}: relaunch- labels are relaunch's own")
    return labels


_ZONE = re.compile(r"^[a-z]+-[a-z]+\d+-[a-z]$")


def check_zone(zone: str) -> str:
    if not _ZONE.match(zone):
        raise ValueError(f"{zone!r} is not a Google Cloud zone (e.g. us-central1-a)")
    return zone


class Strict(BaseModel):
    """Base of every spec model: unknown fields are errors that name the field."""

    # allow_inf_nan=False: `.inf`, `.nan` or 1e309 in any number is refused here, naming
    # the field, instead of being stored as null and poisoning every agent that reads it.
    model_config = ConfigDict(
        extra="forbid", validate_default=True, frozen=False, allow_inf_nan=False
    )


def _location(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _known_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names valid at ``loc`` (for 'did you mean' on a typo)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or not (
            isinstance(current, type) and issubclass(current, BaseModel)
        ):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        ann = field.annotation
        for arg in [ann, *getattr(ann, "__args__", ())]:
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                current = arg
                break
        else:
            from relaunch.spec.sections import section_model

            current = section_model(field.metadata)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def spec_error(source: str, model: type[BaseModel], err: ValidationError) -> SpecError:
    """One line from a pydantic error: the file, the field, what is wrong, the fix."""
    errors = err.errors()
    # A typo'd field also makes the real one "missing": name the typo, the cause.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(first["loc"])
    where = _location(loc)
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    if first["type"] == "extra_forbidden":
        name = str(loc[-1])
        known = _known_fields(model, loc[:-1])
        close = difflib.get_close_matches(name, known, n=1)
        hint = (
            f"did you mean '{close[0]}'?"
            if close
            else (f"valid fields here: {', '.join(known)}" if known else "remove it")
        )
        return SpecError(f"{source}: unknown field '{where}'{more}", hint=hint)
    msg = first["msg"].removeprefix("Value error, ")
    got = first.get("input")
    shown = f" (got {got!r})" if got is not None and not isinstance(got, dict | list) else ""
    return SpecError(
        f"{source}: {where}: {msg}{shown}{more}",
        hint="fix that field; `relaunch schema` lists every field",
    )
