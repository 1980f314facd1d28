"""The rules of an image declaration's names and references, as plain functions: the
models (``spec/images.py``) and the project file's quick check (``spec/vouch.py``)
apply the same ones. Each returns its value or raises ValueError saying what is wrong.

Standard library only.
"""

from __future__ import annotations

import re

# A Docker repository path component: lowercase, digits, separated by . _ __ or -.
_IMAGE_NAME = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_ARG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_REF = re.compile(r"^env:[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_REF = re.compile(r"^projects/[^/]+/secrets/[^/]+(/versions/[^/]+)?$")
BUILDER_NAMES = ("auto", "docker", "cloudbuild")
#: an image build's timeout is more than 0 and at most this many seconds
BUILD_TIMEOUT_MAX = 24 * 3600


def check_image_name(name: str) -> str:
    if not _IMAGE_NAME.match(name) or len(name) > 128:
        raise ValueError(
            f"{name!r} is not a valid image name (lowercase letters, digits, '.', '_', '-')"
        )
    return name


def check_arg_name(name: str) -> str:
    if not _ARG_NAME.match(name):
        raise ValueError(f"{name!r} is not a build arg name")
    return name


def check_arg_names(args: dict[str, str]) -> dict[str, str]:
    for name in args:
        check_arg_name(name)
    return args


def check_secret_refs(secrets: dict[str, str]) -> dict[str, str]:
    for k, ref in secrets.items():
        if not _ARG_NAME.match(k):
            raise ValueError(f"{k!r} is not a secret id (letters, digits, _)")
        if not (_ENV_REF.match(ref) or _SECRET_REF.match(ref)):
            raise ValueError(
                f"secret {k!r}: {ref!r} is neither env:VAR nor projects/P/secrets/S[/versions/V]"
            )
    return secrets


def check_inputs(inputs: list[str] | None) -> list[str] | None:
    if inputs is not None and not [g for g in inputs if g.strip()]:
        raise ValueError("inputs is empty; remove it to hash the whole context")
    return inputs
