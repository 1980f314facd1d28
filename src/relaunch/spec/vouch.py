"""Whether relaunch.toml's models would accept a document, told without them.

``certainly_valid`` answers True only for documents it can check completely: every
section and field one it knows, every value of a type and range the models accept as
they are (the rules of names and references are the very functions the models call,
``spec/imagerules.py``). For anything else — an unknown key, a value it is unsure of —
it answers False, and the caller validates with the models, which name what is wrong.
A False is never an error by itself: a field the models gain makes a document that
uses it take the full path. A rule added to a field checked here must be added here
too; tests/unit/test_project_vouch.py holds the two side by side over a thousand
documents.

Standard library only: `relaunch ps` uses it to skip importing pydantic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from relaunch.errors import UserInputError
from relaunch.gcp.endpoints import GCP_APIS
from relaunch.spec import imagerules, namerules
from relaunch.spec.durations import parse_duration

Check = Callable[[Any], bool]


def _text(v: Any) -> bool:
    return type(v) is str


def _texts(v: Any) -> bool:
    return type(v) is list and all(type(x) is str for x in v)


def _integer(lo: int, hi: int | None = None) -> Check:
    return lambda v: type(v) is int and v >= lo and (hi is None or v <= hi)


def _duration(lo: float = 0.0, *, above: bool = False, hi: float = math.inf) -> Check:
    """A duration of at least ``lo`` (more than ``lo`` with ``above``), at most ``hi``."""

    def check(v: Any) -> bool:
        if type(v) not in (int, float, str):
            return False
        try:
            seconds = parse_duration(v)
        except ValueError:
            return False
        low = seconds > lo if above else seconds >= lo
        return math.isfinite(seconds) and low and seconds <= hi

    return check


def _ruled(kind: type, rule: Callable[[Any], object]) -> Check:
    """A value of type ``kind`` (its items strings) that ``rule`` lets through."""

    def check(v: Any) -> bool:
        if type(v) is not kind:
            return False
        items = v.values() if isinstance(v, dict) else v if isinstance(v, list) else [v]
        if not all(type(x) is str for x in items):
            return False
        try:
            rule(v)
        except ValueError:
            return False
        return True

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
    "project": {
        "name": _ruled(str, namerules.check_name),
        "entity": _ruled(str, namerules.check_one_line),
    },
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
        "builder": _one_of(*imagerules.BUILDER_NAMES),
    },
}

#: the fields of one ``[images.NAME]``; ``dockerfile`` is required
IMAGE: dict[str, Check] = {
    "dockerfile": _text,
    "context": _text,
    "parent": _ruled(str, imagerules.check_image_name),
    "parent_arg": _ruled(str, imagerules.check_arg_name),
    "inputs": _ruled(list, imagerules.check_inputs),
    "args": _ruled(dict, imagerules.check_arg_names),
    "repository": _text,
    "dockerignore": _text,
    "platform": _text,
    "timeout": _duration(0.0, above=True, hi=imagerules.BUILD_TIMEOUT_MAX),
    "machine_type": _text,
    "include_git": lambda v: type(v) is bool,
    "secrets": _ruled(dict, imagerules.check_secret_refs),
}


def certainly_valid(doc: Any) -> bool:
    """True only when relaunch.toml's models certainly accept ``doc`` (parsed TOML)."""
    if type(doc) is not dict:
        return False
    for name, section in doc.items():
        if name == "images":
            if not _images(section):
                return False
        elif name not in SECTIONS or not _fields(SECTIONS[name], section):
            return False
    return True


def _images(images: Any) -> bool:
    if type(images) is not dict:
        return False
    for name, image in images.items():
        if not _ruled(str, imagerules.check_image_name)(name):
            return False
        if not _fields(IMAGE, image) or "dockerfile" not in image:
            return False
    return True


def _fields(checks: dict[str, Check], section: Any) -> bool:
    if type(section) is not dict:
        return False
    for field, value in section.items():
        check = checks.get(field)
        if check is None or not check(value):
            return False
    return True
