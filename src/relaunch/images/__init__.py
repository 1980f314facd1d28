"""The container image stack: discovery, content-hash tags, the rebuild plan, builders.

Library entry points (each also behind ``relaunch images``):
:func:`resolve_image` (a job's ``image:`` → full URI, building what is missing),
``relaunch.images.build.plan_images`` and ``relaunch.images.build.build_images``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relaunch.images.plan import PlanItem
    from relaunch.spec.project import ProjectConfig


def resolve_image(
    project_config: ProjectConfig,
    name_or_uri: str,
    *,
    build_missing: bool,
    on_build: Callable[[str], None] | None = None,
) -> str:
    """A job's ``image:`` (a stack image name or a full reference) as the full URI of the
    current tag, in the registry; see :func:`relaunch.images.build.resolve_image`.
    ``on_build`` gets one line as each missing image starts building and one when it is
    pushed (quiet when None)."""
    from relaunch.images.build import resolve_image as _resolve

    def progress(event: str, item: PlanItem, text: str) -> None:
        if on_build is None:
            return
        if event == "start":
            on_build(f"building image {item.name}:{item.tag} ({item.state.value}) with {text}")
        elif event == "done":
            on_build(f"pushed {item.uri} (log: {text})")

    return _resolve(project_config, name_or_uri, build_missing=build_missing, progress=progress)


__all__ = ["resolve_image"]
