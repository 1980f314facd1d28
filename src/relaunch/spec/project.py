"""The project config: what relaunch.toml says."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, PrivateAttr, field_validator

from relaunch.gcp.endpoints import GCP_APIS
from relaunch.spec.common import Duration, Strict
from relaunch.spec.images import ImageName, ImageSpec, ImageStackSection
from relaunch.spec.namerules import check_name, check_one_line
from relaunch.spec.projectfile import DEFAULT_STORE


class ProjectSection(Strict):
    name: str = Field("relaunch", description="${project_name}; also the W&B project")
    entity: str | None = Field(None, description="${entity_name}; the W&B entity")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

    @field_validator("entity")
    @classmethod
    def _entity(cls, v: str | None) -> str | None:
        return None if v is None else check_one_line(v)


class StoreSection(Strict):
    url: str = Field(DEFAULT_STORE, description="a folder (relative to relaunch.toml) or gs://b/p")

    @field_validator("url")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        from relaunch.errors import UserInputError
        from relaunch.store import check_store_scheme

        try:
            return check_store_scheme(v)
        except UserInputError as e:
            raise ValueError(e.message) from None


class AgentSection(Strict):
    queues: list[str] = Field(default_factory=lambda: ["default"])
    max_jobs: int = Field(4, ge=1)
    poll: Duration | None = Field(None, description="queue poll; default 0.25s local, 5s gs://")
    lease_ttl: Duration = Field(30.0, ge=2, description="an agent silent this long is dead")


class GcpSection(Strict):
    project: str | None = None
    region: str | None = None
    staging_bucket: str | None = None
    service_account: str | None = None
    endpoints: dict[str, str] = Field(
        default_factory=dict, description="API name → endpoint URL (private or emulator)"
    )

    @field_validator("endpoints")
    @classmethod
    def _known_apis(cls, v: dict[str, str]) -> dict[str, str]:
        for api in v:
            if api not in GCP_APIS:
                raise ValueError(f"unknown API {api!r}; known: {', '.join(GCP_APIS)}")
        return v


class ProjectConfig(Strict):
    project: ProjectSection = Field(default_factory=ProjectSection)  # type: ignore[arg-type]
    store: StoreSection = Field(default_factory=StoreSection)  # type: ignore[arg-type]
    agent: AgentSection = Field(default_factory=AgentSection)  # type: ignore[arg-type]
    gcp: GcpSection = Field(default_factory=GcpSection)
    images: dict[ImageName, ImageSpec] = Field(
        default_factory=dict, description="[images.NAME]: the container image stack"
    )
    image_stack: ImageStackSection = Field(default_factory=ImageStackSection)  # type: ignore[arg-type]

    # Where relaunch.toml was found (None: defaults, rooted at the working directory).
    _root: Path = PrivateAttr(default_factory=Path.cwd)

    @property
    def root(self) -> Path:
        return self._root
