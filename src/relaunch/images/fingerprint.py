"""An image's fingerprint (its tag and what went into it) and the record of its last
build, which the plan compares against to say *what* changed."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from relaunch.images.dockerignore import Matcher
from relaunch.images.files import Walker, skip_names
from relaunch.images.hashing import compute_tag
from relaunch.images.pool import TaskPool
from relaunch.images.snapshot import View, hash_views
from relaunch.images.stack import Image, Stack
from relaunch.images.statcache import StatCache


@dataclass
class Fingerprint:
    name: str
    tag: str
    uri: str
    dockerfile: str  # digest of the Dockerfile
    args: dict[str, str]  # build args and platform, as hashed
    parent_tag: str | None
    files: Mapping[str, str]  # path → "<kind>:<digest>" (decoded when first read)

    def changes_since(self, old: Fingerprint) -> list[str]:
        """What differs from ``old`` in this image's own inputs (not its parent)."""
        out: list[str] = []
        if self.dockerfile != old.dockerfile:
            out.append("Dockerfile")
        for k in sorted(set(self.args) | set(old.args)):
            if self.args.get(k) != old.args.get(k):
                out.append(k.strip("()") if k.startswith("(") else f"arg {k}")
        for path in sorted(set(self.files) | set(old.files)):
            new, was = self.files.get(path), old.files.get(path)
            if new != was:
                out.append(f"+{path}" if was is None else f"-{path}" if new is None else path)
        return out


@dataclass
class BuildRecord:
    fingerprint: Fingerprint
    pushed: bool
    builder: str
    log: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def _record_path(stack: Stack, name: str) -> Path:
    return stack.state_dir / "built" / f"{name}.json"


def load_record(stack: Stack, name: str) -> BuildRecord | None:
    try:
        doc = json.loads(_record_path(stack, name).read_text())
        doc["fingerprint"] = Fingerprint(**doc["fingerprint"])
        return BuildRecord(**doc)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def save_record(stack: Stack, record: BuildRecord) -> None:
    path = _record_path(stack, record.fingerprint.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".record-", dir=path.parent)
    try:
        doc = asdict(record)
        doc["fingerprint"]["files"] = dict(record.fingerprint.files)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def image_view(stack: Stack, image: Image) -> View:
    """The selection of files whose content makes ``image``'s tag."""
    if image.inputs is not None:
        base, matcher, select = stack.root, Matcher(image.inputs, image.inputs_source), True
    else:
        base, matcher, select = image.context, Matcher.from_file(image.dockerignore), False
    walker = Walker(
        base,
        matcher,
        select=select,
        skip=skip_names(image.include_git),
        state=str(stack.state_dir.parent),
    )
    # Cache entries are per walk base (the same folder seen from another base has other
    # relative paths) and per selection rule.
    prefix = (
        base.relative_to(stack.root).as_posix() if base.is_relative_to(stack.root) else str(base)
    )
    rules = [("!" if p.exception else "") + p.text for p in matcher.patterns]
    rule = repr((select, sorted(walker.skip), walker.state, rules)).encode()
    key = f"{prefix}\0{hashlib.sha256(rule).hexdigest()[:16]}"
    return View(key, str(base), walker, matcher if select else None)


def fingerprints(
    stack: Stack, names: list[str] | None = None, *, use_cache: bool = True
) -> dict[str, Fingerprint]:
    """Fingerprints of ``names`` and their ancestors (default: the whole stack), computed
    parent first. Files shared by several images are read once."""
    wanted: set[str] = set()
    for n in names if names is not None else stack.order:
        stack.get(n)
        wanted.update(stack.lineage(n))
    order = [n for n in stack.order if n in wanted]
    cache_path = stack.state_dir / "stat-cache"
    with TaskPool() as pool:
        if use_cache:  # start the workers now: they come up while the cache loads
            pool.expect(StatCache.expected_files(cache_path))
        cache = StatCache(cache_path) if use_cache else None
        views = [image_view(stack, stack.images[n]) for n in order]
        hashed = dict(zip(order, hash_views(views, cache, pool), strict=True))
    if cache is not None:
        cache.save()
    out: dict[str, Fingerprint] = {}
    for n in order:
        image = stack.images[n]
        dockerfile = image.dockerfile.read_bytes()
        parent_tag = out[image.parent].tag if image.parent else None
        args = dict(image.args)
        if image.inputs is not None and image.dockerignore is not None:
            # it decides which inputs are sent, so it is part of what the tag covers
            ignore = hashlib.sha256(image.dockerignore.read_bytes()).hexdigest()
            args["(dockerignore)"] = ignore
        tag = compute_tag(
            dockerfile=dockerfile,
            args=args,
            platform=image.platform,
            parent_tag=parent_tag,
            file_records=hashed[n].records,
            length=stack.tag_length,
        )
        out[n] = Fingerprint(
            name=n,
            tag=tag,
            uri=image.uri(tag),
            dockerfile=hashlib.sha256(dockerfile).hexdigest(),
            args={**args, "(platform)": image.platform},
            parent_tag=parent_tag,
            files=hashed[n],
        )
    return out
