"""Whether relaunch.toml's models would accept a document, told without them.

``certainly_valid`` answers True only for documents it can check completely: every
section and field one it knows, every value of a type and range the models accept as
they are. For anything else — an unknown key, a value it is unsure of, ``[images.*]``
(whose rules live with the image stack) — it answers False, and the caller validates
with the models, which name what is wrong. A False is never an error by itself, so
this check can only ever be narrower than the models: a new field or rule there
makes a document that uses it take the full path, never slip through.

Standard library only: `relaunch ps` uses it to skip importing pydantic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from relaunch.errors import UserInputError
from relaunch.gcp.endpoints import GCP_APIS
from relaunch.spec.durations import parse_duration

Check = Callable[[Any], bool]


def _text(v: Any) -> bool:
    return type(v) is str


def _texts(v: Any) -> bool:
    return type(v) is list and all(type(x) is str for x in v)


def _integer(lo: int, hi: int | None = None) -> Check:
    return lambda v: type(v) is int and v >= lo and (hi is None or v <= hi)


def _duration(lo: float = 0.0) -> Check:
    def check(v: Any) -> bool:
        if type(v) not in (int, float, str):
            return False
        try:
            seconds = parse_duration(v)
        except ValueError:
            return False
        return math.isfinite(seconds) and seconds >= lo

    return check


def _one_of(*choices: str) -> Check:
    return lambda v: type(v) is str and v in choices


def _store_url(v: Any) -> bool:
    from relaunch.store import check_store_scheme

    if type(v) is not str:
        return False
    try:
        check_store_scheme(v)
    except UserInputError:
        return False
    return True


def _endpoints(v: Any) -> bool:
    return type(v) is dict and all(k in GCP_APIS and type(u) is str for k, u in v.items())


#: section → field → check; the sections and fields of ``spec/project.py`` it vouches for
SECTIONS: dict[str, dict[str, Check]] = {
    "project": {"name": _text, "entity": _text},
    "store": {"url": _store_url},
    "agent": {
        "queues": _texts,
        "max_jobs": _integer(1),
        "poll": _duration(),
        "lease_ttl": _duration(2.0),
    },
    "gcp": {
        "project": _text,
        "region": _text,
        "staging_bucket": _text,
        "service_account": _text,
        "endpoints": _endpoints,
    },
    "image_stack": {
        "discover": _text,
        "repository": _text,
        "tag_length": _integer(7, 64),
        "builder": _one_of("auto", "docker", "cloudbuild"),
    },
}


def certainly_valid(doc: Any) -> bool:
    """True only when relaunch.toml's models certainly accept ``doc`` (parsed TOML)."""
    if type(doc) is not dict:
        return False
    for name, section in doc.items():
        if name == "images" and section == {}:
            continue  # an empty [images] table declares no image
        fields = SECTIONS.get(name)
        if fields is None or type(section) is not dict:
            return False
        for field, value in section.items():
            check = fields.get(field)
            if check is None or not check(value):
                return False
    return True
