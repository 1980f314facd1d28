"""Sections of a spec whose models are imported and built only for a document that has
them: a local job never pays for the ``vertex:`` and ``gce:`` models (a dozen pydantic
classes, most of what `relaunch run --detach` would spend building models).

A lazy section validates exactly as a plain model field would (the same errors, at
the same locations), serializes as the model, and has the model's JSON schema. What
differs is a section the document does not give: it is stored as ``ABSENT`` (left out
of every dump), and reading the attribute builds the model's default then, once.

    class JobSpec(Strict):
        vertex: VertexOptions = lazy_section()
    install_lazy_sections(JobSpec)

where ``VertexOptions`` is the real class for type checkers and, at run time, the
``Annotated[Any, LazySection("relaunch.spec.vertex:VertexOptions")]`` that names it.
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import BaseModel, Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema


class _Absent:
    """The value of a section the document did not give."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


class LazySection:
    """Annotation metadata: the field is the model ``module:Name``, imported and built
    when a value for it is first validated (or its default first read)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def model(self) -> type[BaseModel]:
        module, name = self.target.split(":")
        model: type[BaseModel] = getattr(importlib.import_module(module), name)
        return model

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        # A ref, as a model's schema has: the field's JSON schema gets no title of its own.
        return core_schema.no_info_plain_validator_function(self._validate, ref=self.target)

    def _validate(self, value: Any) -> Any:
        # A ValidationError raised here keeps its errors, located under the field.
        return value if value is ABSENT else self.model().model_validate(value)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # Through the generator itself (the handler alone would inline the model), so the
        # model is a $defs entry and the field its $ref: `relaunch schema job` unchanged.
        generator = getattr(handler, "generate_json_schema", None)
        inner = self.model().__pydantic_core_schema__
        return generator.generate_inner(inner) if generator is not None else handler(inner)


def lazy_section() -> Any:
    """The ``Field`` of a lazy section: ABSENT when not given, and never dumped then."""
    return Field(default_factory=lambda: ABSENT, exclude_if=lambda v: v is ABSENT)


class _SectionAttribute:
    """Reads a lazy section; an ABSENT one becomes the model's default on first read."""

    def __init__(self, name: str, section: LazySection) -> None:
        self.name, self.section = name, section

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = obj.__dict__[self.name]
        if value is ABSENT:
            value = obj.__dict__[self.name] = self.section.model()()
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = value


def install_lazy_sections(model: type[BaseModel]) -> None:
    """Make every lazy section of ``model`` read as its model (default when absent)."""
    for name, field in model.model_fields.items():
        for meta in field.metadata:
            if isinstance(meta, LazySection):
                setattr(model, name, _SectionAttribute(name, meta))


def section_model(field_metadata: list[Any]) -> type[BaseModel] | None:
    """The model of a lazy section field (by its ``FieldInfo.metadata``), or None."""
    for meta in field_metadata:
        if isinstance(meta, LazySection):
            return meta.model()
    return None


def given(model: BaseModel, name: str) -> Any | None:
    """The section ``name`` of ``model`` as the document gave it, or None: what a
    validator reads, so a job without the section does not build its model."""
    value = model.__dict__[name]
    return None if value is ABSENT else value
