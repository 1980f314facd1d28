"""The container image stack: discovery, content-hash tags, the rebuild plan, builders.

Library entry points (each also behind ``relaunch images``):
:func:`resolve_image` (a job's ``image:`` → full URI, building what is missing),
``relaunch.images.build.plan_images`` and ``relaunch.images.build.build_images``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relaunch.spec.project import ProjectConfig


def resolve_image(project_config: ProjectConfig, name_or_uri: str, *, build_missing: bool) -> str:
    """A job's ``image:`` (a stack image name or a full reference) as the full URI of the
    current tag; see :func:`relaunch.images.build.resolve_image`."""
    from relaunch.images.build import resolve_image as _resolve

    return _resolve(project_config, name_or_uri, build_missing=build_missing)


__all__ = ["resolve_image"]
