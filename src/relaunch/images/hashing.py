"""The image tag.

The tag is SHA-256 over (in this order, each field length-delimited): a format version,
the Dockerfile's bytes, the build args and platform, the parent's tag, and for every
input file its path, whether it is executable or a symlink, and its content digest.
Times, owners and files outside the inputs do not count; uncommitted edits do.

The file records come from ``snapshot.hash_views`` (which keeps them, encoded, in the
stat cache: an unchanged folder's records are reused as one bytes object).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

TAG_FORMAT = b"relaunch-image-tag/1"


def _field(label: str, value: bytes) -> bytes:
    return label.encode() + b"\0" + str(len(value)).encode() + b"\0" + value


def file_record(rel: str, kind_digest: str) -> bytes:
    """A file's tag record; ``kind_digest`` is "<kind>:<digest>"."""
    kind, _, digest = kind_digest.partition(":")
    return _field("file", f"{rel}\0{kind}\0{digest}".encode())


def parse_records(records: bytes) -> Iterator[tuple[str, str]]:
    """(path, "kind:digest") of each file record, the inverse of ``file_record``."""
    i, n = 0, len(records)
    while i < n:
        j = records.index(b"\0", i + 5)
        size = int(records[i + 5 : j])
        rel, kind, digest = records[j + 1 : j + 1 + size].decode().split("\0")
        yield rel, f"{kind}:{digest}"
        i = j + 1 + size


def compute_tag(
    *,
    dockerfile: bytes,
    args: dict[str, str],
    platform: str,
    parent_tag: str | None,
    file_records: list[bytes],
    length: int,
) -> str:
    """The image tag: ``length`` hex digits. ``file_records`` come from ``snapshot.hash_views``."""
    h = hashlib.sha256()
    h.update(TAG_FORMAT)
    h.update(_field("dockerfile", dockerfile))
    for k in sorted(args):
        h.update(_field("arg", f"{k}={args[k]}".encode()))
    h.update(_field("platform", platform.encode()))
    h.update(_field("parent", (parent_tag or "").encode()))
    for records in file_records:
        h.update(records)
    return h.hexdigest()[:length]
