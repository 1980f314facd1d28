"""The image stack: images declared in relaunch.toml or discovered in a ``Stack/`` folder,
checked (Dockerfiles exist, parents are known, no cycles) and ordered parent → child.

Discovery follows the seeds' layout: ``Stack/<name>/Dockerfile``, an optional
``Stack/<name>/.image-manifest`` (one input glob per line, relative to the project root;
``#`` comments) and ``Stack/<name>/Dockerfile.dockerignore``. The context is the project
root, and the parent is the stack image a ``FROM`` names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from relaunch.errors import SpecError
from relaunch.images.dockerfile import FromLine, from_lines, repository_basename, uses_arg
from relaunch.spec.images import ImageSpec, check_image_name
from relaunch.spec.project import ProjectConfig

MANIFEST = ".image-manifest"
DEFAULT_STACK_DIR = "Stack"
STATE_DIR = Path(".relaunch") / "images"


@dataclass(frozen=True)
class Image:
    """One image, with absolute paths. ``source`` says where it was declared."""

    name: str
    dockerfile: Path
    context: Path
    parent: str | None
    parent_arg: str | None
    inputs: tuple[str, ...] | None
    inputs_source: str
    args: dict[str, str]
    repository: str | None
    dockerignore: Path | None
    platform: str
    timeout: float
    machine_type: str | None
    include_git: bool
    source: str
    secrets: dict[str, str] = field(default_factory=dict)  # id → env:VAR or Secret Manager

    def uri(self, tag: str) -> str:
        base = f"{self.repository.rstrip('/')}/{self.name}" if self.repository else self.name
        return f"{base}:{tag}"

    def dockerfile_in_context(self) -> str:
        """The Dockerfile's path inside the context (slash path)."""
        try:
            return self.dockerfile.relative_to(self.context).as_posix()
        except ValueError:
            raise SpecError(
                f"{self.source}: dockerfile {self.dockerfile} is outside the context "
                f"{self.context}",
                hint="move the Dockerfile into the context or widen 'context'",
            ) from None


@dataclass(frozen=True)
class Stack:
    root: Path
    images: dict[str, Image]
    order: list[str]  # every parent before its children
    tag_length: int
    state_dir: Path = field(compare=False)

    def lineage(self, name: str) -> list[str]:
        """``name`` and its ancestors, the oldest first."""
        chain = [name]
        while (parent := self.images[chain[-1]].parent) is not None:
            chain.append(parent)
        return chain[::-1]

    def get(self, name: str) -> Image:
        if name not in self.images:
            import difflib

            close = difflib.get_close_matches(name, list(self.images), n=1)
            known = ", ".join(self.order) or "(none)"
            hint = f"did you mean '{close[0]}'?" if close else f"known images: {known}"
            raise SpecError(f"'{name}' is not an image of the stack", hint=hint)
        return self.images[name]


def _rel(root: Path, p: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return str(p)


def _declared(root: Path, name: str, spec: ImageSpec, default_repo: str | None) -> Image:
    source = f"relaunch.toml [images.{name}]"
    dockerfile = (root / spec.dockerfile).resolve()
    context = (root / spec.context).resolve()
    if not dockerfile.is_file():
        raise SpecError(
            f"{source}: Dockerfile not found: {_rel(root, dockerfile)}", hint="fix 'dockerfile'"
        )
    if not context.is_dir():
        raise SpecError(f"{source}: context folder not found: {_rel(root, context)}")
    if spec.dockerignore is not None:
        ignore: Path | None = (root / spec.dockerignore).resolve()
        if not ignore.is_file():  # type: ignore[union-attr]
            raise SpecError(f"{source}: dockerignore not found: {spec.dockerignore}")
    else:
        ignore = _default_dockerignore(dockerfile, context)
    return Image(
        name=name,
        dockerfile=dockerfile,
        context=context,
        parent=spec.parent,
        parent_arg=spec.parent_arg if spec.parent else None,
        inputs=tuple(g.strip() for g in spec.inputs if g.strip()) if spec.inputs else None,
        inputs_source=f"{source}.inputs",
        args=dict(spec.args),
        repository=spec.repository or default_repo,
        dockerignore=ignore,
        platform=spec.platform,
        timeout=spec.timeout,
        machine_type=spec.machine_type,
        include_git=spec.include_git,
        source=source,
        secrets=dict(spec.secrets),
    )


def _default_dockerignore(dockerfile: Path, context: Path) -> Path | None:
    """Docker's lookup: ``<Dockerfile>.dockerignore`` next to it, else the context's."""
    for candidate in (dockerfile.with_name(dockerfile.name + ".dockerignore"),):
        if candidate.is_file():
            return candidate
    candidate = context / ".dockerignore"
    return candidate if candidate.is_file() else None


def read_manifest(path: Path) -> tuple[str, ...]:
    """The globs of a ``.image-manifest``: one per line, ``#`` comments, blanks skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read {path}: {e}") from None
    globs = tuple(
        line.split(" #", 1)[0].strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    )
    if not globs:
        raise SpecError(f"{path}: lists no file", hint="add input globs or delete the file")
    return globs


def discover(root: Path, folder: Path, default_repo: str | None) -> dict[str, Image]:
    """Images of a seeds-style folder; parents are wired by :func:`_wire_parents`."""
    found: dict[str, Image] = {}
    for dockerfile in sorted(folder.glob("*/Dockerfile")):
        name = dockerfile.parent.name
        try:
            check_image_name(name)
        except ValueError as e:
            raise SpecError(f"{_rel(root, dockerfile.parent)}: {e}", hint="rename it") from None
        manifest = dockerfile.parent / MANIFEST
        found[name] = Image(
            name=name,
            dockerfile=dockerfile.resolve(),
            context=root,
            parent=None,
            parent_arg=None,
            inputs=read_manifest(manifest) if manifest.is_file() else None,
            inputs_source=_rel(root, manifest),
            args={},
            repository=default_repo,
            dockerignore=_default_dockerignore(dockerfile, root),
            platform="linux/amd64",
            timeout=4 * 3600.0,
            machine_type=None,
            include_git=False,
            source=_rel(root, dockerfile),
        )
    return found


def _wire_parents(root: Path, images: dict[str, Image], names: set[str]) -> dict[str, Image]:
    """``images`` with the parents of ``names`` (discovered images) read from their
    Dockerfiles."""
    from dataclasses import replace

    wired: dict[str, Image] = {}
    for name, image in images.items():
        if name not in names:
            wired[name] = image
            continue
        text = image.dockerfile.read_text(encoding="utf-8", errors="replace")
        _require_from(root, image, text)
        for line in from_lines(text):
            if not line.resolved and len(line.variables) == 1:  # `ARG X` without default
                parent = _manifest_parent(root, name, image, line, images)
                image = replace(image, parent=parent, parent_arg=line.variables[0])
                break
            parent = repository_basename(line.resolved)
            if parent not in images or parent == name:
                continue
            if len(line.variables) != 1 or line.raw not in (
                f"${line.variables[0]}",
                f"${{{line.variables[0]}}}",
            ):
                raise SpecError(
                    f"{_rel(root, image.dockerfile)}:{line.line}: FROM {line.raw} names stack "
                    f"image '{parent}' without a single build arg, so relaunch cannot pin "
                    "the parent's current tag",
                    hint=f"write `ARG BASE_IMAGE={parent}` then `FROM ${{BASE_IMAGE}}`",
                )
            image = replace(image, parent=parent, parent_arg=line.variables[0])
            break
        wired[name] = image
    return wired


def _manifest_parent(
    root: Path, name: str, image: Image, line: FromLine, images: dict[str, Image]
) -> str:
    """The parent of an image whose ``FROM ${X}`` has no default: the one stack image
    whose Dockerfile its ``.image-manifest`` lists (the seeds' trainer lists
    ``Stack/arr-ml-stack/Dockerfile``). None found, or several, is a SpecError: left
    unwired, the parent's edits would leave this image's tag unchanged."""
    var = line.variables[0]
    listed = set(image.inputs or ())
    found = sorted(
        other
        for other, im in images.items()
        if other != name and _rel(root, im.dockerfile) in listed
    )
    where = f"{_rel(root, image.dockerfile)}:{line.line}: FROM {line.raw}"
    if len(found) == 1:
        return found[0]
    if not found:
        raise SpecError(
            f"{where} has no default for {var}, so relaunch cannot tell which stack image "
            "it builds on (its tag would not follow the parent's)",
            hint=f"write `ARG {var}=<parent image>` before the FROM, or list the parent's "
            f"Dockerfile (e.g. {_rel(root, image.dockerfile.parent.parent)}/<parent>/"
            f"Dockerfile) in {image.inputs_source}",
        )
    raise SpecError(
        f"{where} has no default for {var}, and {image.inputs_source} lists the "
        f"Dockerfiles of {', '.join(found)}: relaunch cannot tell which is the parent",
        hint=f"write `ARG {var}=<parent image>` before the FROM",
    )


def _require_from(root: Path, image: Image, text: str) -> None:
    """A Dockerfile without FROM cannot build: say so at plan time, not after a build."""
    if not from_lines(text):
        raise SpecError(
            f"{_rel(root, image.dockerfile)} (image {image.name}) has no FROM line",
            hint="start it with FROM <base image> (FROM scratch for an empty one)",
        )


def _check_declared_base(root: Path, image: Image) -> None:
    """A declared image whose first ``FROM ${X}`` has no default needs ``parent`` (or
    ``args.X``): else docker gets an empty base, or the parent's edits are missed."""
    text = image.dockerfile.read_text(encoding="utf-8", errors="replace")
    _require_from(root, image, text)
    if image.parent is not None:
        return
    froms = from_lines(text)
    if not froms or froms[0].resolved or len(froms[0].variables) != 1:
        return
    var = froms[0].variables[0]
    if var in image.args:
        return
    raise SpecError(
        f"{_rel(root, image.dockerfile)}:{froms[0].line}: FROM {froms[0].raw} has no default "
        f"for {var}, and {image.source} sets neither parent nor args.{var}",
        hint=f'set parent = "<stack image>" in {image.source} (its URI is passed as {var})',
    )


def manifest_warnings(stack: Stack) -> list[str]:
    """One line per discovered image without a ``.image-manifest``: its tag hashes every
    file of the project root its dockerignore lets through, so an unrelated edit (a
    README) rebuilds it, which for a base compiled from source costs hours."""
    out = []
    for name in stack.order:
        image = stack.images[name]
        if image.inputs is None and image.inputs_source.endswith(MANIFEST):
            out.append(
                f"warning: {name} has no {MANIFEST}, so any file of the project root its "
                f"dockerignore lets through changes its tag; list its inputs in "
                f"{image.inputs_source}"
            )
    return out


def _order(images: dict[str, Image]) -> list[str]:
    """Parents first; siblings by name. A cycle or an unknown parent is a SpecError."""
    for image in images.values():
        if image.parent is not None and image.parent not in images:
            known = ", ".join(sorted(images))
            raise SpecError(
                f"{image.source}: parent '{image.parent}' is not an image of the stack",
                hint=f"known images: {known}",
            )
    order: list[str] = []
    done: set[str] = set()
    for name in sorted(images):
        path: list[str] = []
        current: str | None = name
        while current is not None and current not in done:
            if current in path:
                cycle = [*path[path.index(current) :], current]
                raise SpecError(
                    f"{images[current].source}: parent cycle {' → '.join(cycle)}",
                    hint="an image cannot be its own ancestor; fix 'parent' (or FROM)",
                )
            path.append(current)
            current = images[current].parent
        for n in reversed(path):
            order.append(n)
            done.add(n)
    return order


def load_stack(config: ProjectConfig, *, discover_dir: str | Path | None = None) -> Stack:
    """The project's stack: ``[images.*]`` plus images discovered in ``discover_dir``
    (default: ``[image_stack] discover``, else ``Stack/`` when nothing is declared)."""
    root = config.root.resolve()
    section = config.image_stack
    default_repo = section.repository
    images: dict[str, Image] = {}
    folder = discover_dir or section.discover
    if folder is None and not config.images and (root / DEFAULT_STACK_DIR).is_dir():
        folder = DEFAULT_STACK_DIR
    if folder is not None:
        path = (root / folder).resolve()
        if not path.is_dir():
            raise SpecError(f"stack folder not found: {path}", hint="check [image_stack] discover")
        images.update(discover(root, path, default_repo))
    found = set(images) - set(config.images)
    for name, spec in config.images.items():
        images[name] = _declared(root, name, spec, default_repo)
    images = _wire_parents(root, images, found)
    for name in config.images:
        _check_declared_base(root, images[name])
    for image in images.values():
        if image.parent is not None and image.parent_arg is not None:
            text = image.dockerfile.read_text(encoding="utf-8", errors="replace")
            if not uses_arg(text, image.parent_arg):
                raise SpecError(
                    f"{_rel(root, image.dockerfile)}: never uses build arg "
                    f"{image.parent_arg}, so it would not build FROM the current "
                    f"'{image.parent}'",
                    hint=f"write `ARG {image.parent_arg}` then `FROM ${{{image.parent_arg}}}`",
                )
    return Stack(
        root=root,
        images=images,
        order=_order(images),
        tag_length=section.tag_length,
        state_dir=root / STATE_DIR,
    )
