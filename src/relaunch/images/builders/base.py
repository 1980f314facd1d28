"""The builder contract."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from relaunch.images.context import ContextTarball, write_context
from relaunch.images.plan import PlanItem
from relaunch.images.stack import Stack
from relaunch.spec.images import BUILDER_NAMES

BUILDERS = BUILDER_NAMES


@dataclass
class BuildRequest:
    """One image to build. ``parent_uri`` is passed as the build arg ``parent_arg``."""

    stack: Stack
    item: PlanItem
    parent_uri: str | None
    push: bool
    log_path: Path
    on_line: Callable[[str], None] = lambda line: None

    @property
    def build_args(self) -> dict[str, str]:
        args = dict(self.item.image.args)
        if self.item.image.parent_arg and self.parent_uri:
            args[self.item.image.parent_arg] = self.parent_uri
        return args

    def context_tarball(self) -> ContextTarball:
        """The deterministic context, checked against the digests the tag was made of."""
        image, fp = self.item.image, self.item.fingerprint
        dest = self.stack.state_dir / "contexts" / f"{image.name}-{fp.tag}.tar.gz"
        return write_context(self.stack, image, fp, dest)


@dataclass
class BuildResult:
    builder: str
    pushed: bool
    log: Path
    detail: dict[str, str] = field(default_factory=dict)


class Builder(Protocol):
    name: str

    def build(self, req: BuildRequest) -> BuildResult:
        """Build (and push when ``req.push``); return when the image exists. Raises
        BackendError with a reason: ``user-error`` for a failing Dockerfile,
        ``permission``/``transient`` for the infrastructure."""
        ...


class LogFile:
    """Appends lines to the build log and forwards them to the progress display."""

    def __init__(self, req: BuildRequest) -> None:
        req.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(req.log_path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
        self._on_line = req.on_line

    def line(self, text: str) -> None:
        text = text.rstrip("\r\n")
        self._f.write(text + "\n")
        self._f.flush()
        self._on_line(text)

    def close(self) -> None:
        self._f.close()
