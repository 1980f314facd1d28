"""The image stack as relaunch.toml declares it: ``[images.NAME]`` and ``[image_stack]``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from relaunch.spec.common import Duration, Strict
from relaunch.spec.imagerules import (
    BUILD_TIMEOUT_MAX,
    BUILDER_NAMES,
    check_arg_name,
    check_arg_names,
    check_image_name,
    check_inputs,
    check_secret_refs,
)

__all__ = ["BUILDER_NAMES", "ImageName", "ImageSpec", "ImageStackSection", "check_image_name"]


ImageName = Annotated[str, AfterValidator(check_image_name)]


class ImageSpec(Strict):
    """One image of the stack. Paths are relative to the folder of relaunch.toml."""

    dockerfile: str = Field(description="path to the Dockerfile")
    context: str = Field(".", description="the build context folder")
    parent: ImageName | None = Field(None, description="the stack image this one is FROM")
    parent_arg: str = Field(
        "BASE_IMAGE", description="build arg that receives the parent's full URI (FROM ${...})"
    )
    inputs: list[str] | None = Field(
        None,
        description="globs (Docker pattern syntax) of the files whose content makes the tag; "
        "default: every file of the context after the dockerignore",
    )
    args: dict[str, str] = Field(default_factory=dict, description="build args")
    repository: str | None = Field(
        None, description="registry repository, e.g. us-central1-docker.pkg.dev/PROJECT/REPO"
    )
    dockerignore: str | None = Field(
        None, description="default: <dockerfile>.dockerignore, else <context>/.dockerignore"
    )
    platform: str = Field("linux/amd64", description="target platform of the build")
    timeout: Duration = Field(
        4 * 3600.0, gt=0, le=BUILD_TIMEOUT_MAX, description="Cloud Build timeout"
    )
    machine_type: str | None = Field(None, description="Cloud Build machine, e.g. E2_HIGHCPU_32")
    include_git: bool = Field(False, description="send .git/ in the context (e.g. setuptools-scm)")
    secrets: dict[str, str] = Field(
        default_factory=dict,
        description="build secrets (RUN --mount=type=secret,id=ID): ID → 'env:VAR' (a variable "
        "of the builder's environment; docker builder only) or a Secret Manager secret "
        "projects/P/secrets/S[/versions/V]. Never in the tag, the argv, the log or a request",
    )

    @field_validator("secrets")
    @classmethod
    def _secret_refs(cls, v: dict[str, str]) -> dict[str, str]:
        return check_secret_refs(v)

    @field_validator("parent_arg")
    @classmethod
    def _arg_name(cls, v: str) -> str:
        return check_arg_name(v)

    @field_validator("args")
    @classmethod
    def _arg_names(cls, v: dict[str, str]) -> dict[str, str]:
        return check_arg_names(v)

    @field_validator("inputs")
    @classmethod
    def _non_empty(cls, v: list[str] | None) -> list[str] | None:
        return check_inputs(v)


class ImageStackSection(Strict):
    """Settings for the whole stack."""

    discover: str | None = Field(
        None,
        description="folder of <name>/Dockerfile images to discover (the seeds' Stack/); "
        "default: Stack/ when no [images.*] is declared",
    )
    repository: str | None = Field(None, description="default registry repository of images")
    tag_length: int = Field(12, ge=7, le=64, description="hex digits of the content hash")
    builder: Literal["auto", "docker", "cloudbuild"] = Field("auto")
