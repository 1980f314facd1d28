"""Building what the plan says, parent → child, and the library entry points the rest of
relaunch uses: :func:`plan_images`, :func:`build_images`, :func:`resolve_image`."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from relaunch.errors import NotFoundError, SpecError, UserInputError
from relaunch.images.builders.base import Builder, BuildRequest, BuildResult
from relaunch.images.fingerprint import BuildRecord, save_record
from relaunch.images.gcp import endpoint
from relaunch.images.plan import Plan, PlanItem, State, make_plan
from relaunch.images.registry import Registry
from relaunch.images.stack import Stack, load_stack
from relaunch.spec.loader import PROJECT_FILE
from relaunch.spec.project import ProjectConfig

# (event, item, text): event is "start", "line", "done" or "skip".
Progress = Callable[[str, PlanItem, str], None]


def registry_for(config: ProjectConfig) -> Registry:
    url = endpoint(config, "artifactregistry")
    if url and url.startswith("http://"):
        return Registry(url, token=None)
    return Registry(url)


def plan_images(
    config: ProjectConfig,
    names: list[str] | None = None,
    *,
    offline: bool = False,
    discover_dir: str | Path | None = None,
) -> Plan:
    stack = load_stack(config, discover_dir=discover_dir)
    for n in names or []:
        stack.get(n)
    return make_plan(stack, names, registry=None if offline else registry_for(config))


def make_builder(config: ProjectConfig, name: str) -> Builder:
    from relaunch.images.builders.auto import AutoBuilder
    from relaunch.images.builders.cloudbuild import CloudBuildBuilder
    from relaunch.images.builders.docker import DockerBuilder

    if name == "docker":
        return DockerBuilder()
    if name == "cloudbuild":
        return CloudBuildBuilder(config)
    if name == "auto":
        return AutoBuilder(config)
    raise UserInputError(f"unknown builder '{name}'", hint="use docker, cloudbuild or auto")


def builder_pushes(config: ProjectConfig, kind: str) -> bool:
    """Whether builder ``kind`` always pushes: Cloud Build does (its result lives only in
    the registry), and so does ``auto`` when Cloud Build is configured (its fallback to
    the local docker engine pushes too). Without a repository such a push would go to
    Docker Hub."""
    from relaunch.images.builders.cloudbuild import cloudbuild_configured

    return kind == "cloudbuild" or (kind == "auto" and cloudbuild_configured(config))


def dirty_inputs(stack: Stack, items: list[PlanItem]) -> list[str]:
    """Input files of ``items`` that differ from git's HEAD or are not tracked at all, as
    paths relative to the repository: with them the Dockerfiles, the files that select
    the inputs (dockerignore, .image-manifest) and relaunch.toml (build args, platform
    and parents are part of the tag)."""

    def git(*args: str) -> list[str]:
        try:
            done = subprocess.run(
                ["git", "-C", str(stack.root), *args], capture_output=True, check=False
            )
        except OSError:
            done = None
        if done is None or done.returncode != 0:
            raise UserInputError(
                f"--require-clean needs a git repository at {stack.root}",
                hint="commit the project to git, or build without --require-clean",
            )
        return [p for p in done.stdout.decode("utf-8", "replace").split("\0") if p]

    top = Path(git("rev-parse", "--show-toplevel")[0].strip()).resolve()
    tracked = set(git("ls-files", "-z", "--full-name"))
    changed = set(git("diff", "HEAD", "--name-only", "-z", "--no-renames"))
    dirty: set[str] = set()
    settings = [p for p in (stack.root / PROJECT_FILE,) if items and p.is_file()]
    for it in items:
        image = it.image
        base = stack.root if image.inputs is not None else image.context
        paths = [base / rel for rel in it.fingerprint.files] + [image.dockerfile, *settings]
        for selector in (image.dockerignore, stack.root / image.inputs_source):
            if selector is not None and selector.is_file():
                paths.append(selector)
        for p in paths:
            rel = p.resolve().relative_to(top).as_posix() if p.is_absolute() else str(p)
            if rel not in tracked or rel in changed:
                dirty.add(rel)
    return sorted(dirty)


def _line_reporter(progress: Progress | None, item: PlanItem) -> Callable[[str], None]:
    def report(line: str) -> None:
        if progress is not None:
            progress("line", item, line)

    return report


@dataclass
class Built:
    item: PlanItem
    result: BuildResult | None  # None on --dry-run


def build_images(
    config: ProjectConfig,
    names: list[str] | None = None,
    *,
    builder: str | None = None,
    push: bool = False,
    dry_run: bool = False,
    require_clean: bool = False,
    offline: bool = False,
    plan: Plan | None = None,
    progress: Progress | None = None,
    make: Callable[[ProjectConfig, str], Builder] = make_builder,
) -> list[Built]:
    """Build what the plan says (or ``names`` and their out-of-date ancestors), parents
    first. Each build's log is saved under ``.relaunch/images/logs/``."""
    plan = plan or plan_images(config, names, offline=offline)
    kind = builder or config.image_stack.builder
    pushes = push or builder_pushes(config, kind)
    todo = plan.to_build(names, push=pushes)
    for it in todo:
        if not it.needs_build:  # built here with --load only: the registry lacks it
            it.state, it.note = State.NOT_IN_REGISTRY, "built locally, not pushed"
    unknown = [it for it in todo if it.state is State.UNKNOWN]
    if unknown:
        raise UserInputError(
            f"cannot tell whether {unknown[0].uri} is in the registry: {unknown[0].note}",
            hint="fix registry access, or build with --offline to trust local records",
        )
    if pushes:
        for it in todo:
            if not it.image.repository:
                via = "--push" if push else f"the {kind} builder (it always pushes)"
                raise SpecError(
                    f"{it.image.source}: no registry repository to push {it.name} to with {via}",
                    hint=f"set [image_stack] repository (or [images.{it.name}] repository) in "
                    "relaunch.toml, or build with --builder docker and no --push",
                )
    if require_clean:
        dirty = dirty_inputs(plan.stack, todo)
        if dirty:
            more = f" (and {len(dirty) - 1} more)" if len(dirty) > 1 else ""
            raise UserInputError(
                f"--require-clean: {dirty[0]} is not committed{more}",
                hint="commit or stash the change; a release image must match a commit",
            )
    impl = None if dry_run else make(config, kind)
    uris = {it.name: it.uri for it in plan.items}
    out: list[Built] = []
    for it in todo:
        if progress:
            progress("start", it, kind)
        if impl is None:
            out.append(Built(it, None))
            if progress:
                progress("skip", it, "dry run")
            continue
        log_path = plan.stack.state_dir / "logs" / f"{it.name}-{it.tag}.log"
        log_path.unlink(missing_ok=True)  # a build's log is that build's only
        req = BuildRequest(
            stack=plan.stack,
            item=it,
            parent_uri=uris.get(it.image.parent) if it.image.parent else None,
            push=push,
            log_path=log_path,
            on_line=_line_reporter(progress, it),
        )
        result = impl.build(req)
        save_record(
            plan.stack,
            BuildRecord(
                fingerprint=it.fingerprint,
                pushed=result.pushed,
                builder=result.builder,
                log=str(result.log),
                extra=result.detail,
            ),
        )
        it.state, it.in_registry = State.UP_TO_DATE, (True if result.pushed else it.in_registry)
        out.append(Built(it, result))
        if progress:
            progress("done", it, str(result.log))
    return out


def _looks_like_reference(value: str) -> bool:
    return any(c in value for c in "/:@")


def resolve_image(
    config: ProjectConfig,
    name_or_uri: str,
    *,
    build_missing: bool,
    progress: Progress | None = None,
) -> str:
    """The full image URI a cloud job's ``image:`` means: one it can pull.

    - A stack image name → ``<repository>/<name>:<current tag>``. The image needs a
      registry repository (SpecError otherwise: a bare local name cannot be pulled by a
      cloud job). When the registry does not have that tag: with ``build_missing`` it
      (and every ancestor not in the registry) is built and pushed first, reporting to
      ``progress``; without, NotFoundError says which command builds it. A stale or
      local-only tag is never returned.
    - A full reference (contains ``/``, ``:`` or ``@``) → returned unchanged.
    - Anything else → SpecError (a typo must not silently pull from Docker Hub).
    """
    stack = load_stack(config)
    if name_or_uri not in stack.images:
        if _looks_like_reference(name_or_uri):
            return name_or_uri
        stack.get(name_or_uri)  # raises with "did you mean" / the known images
    image = stack.images[name_or_uri]
    if not image.repository:
        raise SpecError(
            f"{image.source}: image {image.name} has no registry repository, so a cloud job "
            "could not pull it",
            hint=f"set [image_stack] repository (or [images.{image.name}] repository) in "
            "relaunch.toml",
        )
    plan = make_plan(stack, [name_or_uri], registry=registry_for(config))
    item = plan.item(name_or_uri)
    if item.known_in_registry and not item.needs_build:
        return item.uri
    if item.state is State.UNKNOWN:
        raise UserInputError(
            f"cannot tell whether {item.uri} is in the registry: {item.note}",
            hint="fix registry access and submit again",
        )
    if not build_missing:
        raise NotFoundError(
            f"image {item.uri} is not in the registry ({item.state.value})",
            hint=f"run `relaunch images build {name_or_uri} --push`",
        )
    build_images(config, [name_or_uri], plan=plan, push=True, progress=progress)
    return item.uri
