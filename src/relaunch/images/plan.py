"""The rebuild plan: for each image (parents first) its tag, whether that tag is already
in the registry, and if not, why not — compared with the image's last recorded build."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from relaunch.errors import BackendError, UserInputError
from relaunch.images.fingerprint import BuildRecord, Fingerprint, fingerprints, load_record
from relaunch.images.registry import Registry
from relaunch.images.stack import Image, Stack


class State(str, enum.Enum):
    UP_TO_DATE = "up to date"
    NOT_IN_REGISTRY = "not in registry"
    NOT_BUILT = "not built"  # never built here, and no registry was asked
    INPUTS_CHANGED = "inputs changed"
    PARENT_CHANGED = "parent changed"
    UNKNOWN = "unknown"  # the registry could not be asked


@dataclass
class PlanItem:
    image: Image
    fingerprint: Fingerprint
    state: State
    changes: list[str] = field(default_factory=list)  # for changed images: what changed
    note: str | None = None
    in_registry: bool | None = None  # None: not asked (no repository, --offline, error)
    pushed_here: bool = False  # this machine's record of this very tag says it was pushed

    @property
    def name(self) -> str:
        return self.image.name

    @property
    def tag(self) -> str:
        return self.fingerprint.tag

    @property
    def uri(self) -> str:
        return self.fingerprint.uri

    @property
    def needs_build(self) -> bool:
        return self.state is not State.UP_TO_DATE

    @property
    def known_in_registry(self) -> bool:
        """The registry said it has this tag, or (not asked) this machine pushed it. An
        image built with ``--load`` only is up to date locally, never in the registry."""
        return self.in_registry is True or (self.in_registry is None and self.pushed_here)

    def to_json(self) -> dict[str, object]:
        return {
            "image": self.name,
            "tag": self.tag,
            "uri": self.uri,
            "parent": self.image.parent,
            "state": self.state.value,
            "changes": self.changes,
            "note": self.note,
            "in_registry": self.in_registry,
        }


@dataclass
class Plan:
    stack: Stack
    items: list[PlanItem]  # parents first

    def item(self, name: str) -> PlanItem:
        for it in self.items:
            if it.name == name:
                return it
        self.stack.get(name)  # unknown name → SpecError with a suggestion
        raise KeyError(name)

    def to_build(self, names: list[str] | None = None, *, push: bool = False) -> list[PlanItem]:
        """What must be built, parent → child: every image that needs it (or, given
        ``names``, those and their ancestors that need it). With ``push`` also every image
        not known to be in the registry, so no child is built FROM a parent URI that was
        never pushed."""
        wanted: set[str] = set()
        for n in names if names is not None else self.stack.order:
            wanted.update(self.stack.lineage(self.stack.get(n).name))
        return [
            it
            for it in self.items
            if it.name in wanted and (it.needs_build or (push and not it.known_in_registry))
        ]


def _state(
    image: Image,
    fp: Fingerprint,
    in_registry: bool | None,
    record: BuildRecord | None,
    parents: dict[str, PlanItem],
) -> tuple[State, list[str], str | None]:
    built_here = record is not None and record.fingerprint.tag == fp.tag
    if in_registry or (in_registry is None and built_here):
        note = None
        if in_registry is None and record is not None and not record.pushed:
            note = "built locally, not pushed"
        return State.UP_TO_DATE, [], note
    if record is None or built_here:
        note = "pushed before, now missing" if built_here and record and record.pushed else None
        return State.NOT_IN_REGISTRY, [], note
    own = fp.changes_since(record.fingerprint)
    parent_moved = fp.parent_tag != record.fingerprint.parent_tag
    if own:
        return State.INPUTS_CHANGED, [*own, *(["(parent)"] if parent_moved else [])], None
    if parent_moved:
        parent = parents.get(image.parent or "")
        why = f"{image.parent}:{fp.parent_tag}"
        return State.PARENT_CHANGED, [why], (parent.state.value if parent else None)
    return State.NOT_IN_REGISTRY, [], None


def _ask(registry: Registry, uris: list[str]) -> list[bool | str]:
    """Whether each URI is in the registry, or why that cannot be told. The first is
    asked alone (a registry that refuses or does not answer is then known, and not
    asked again per image), the rest in parallel (each answer is a round trip)."""

    def one(uri: str) -> bool | str:
        try:
            return registry.exists(uri)
        except (BackendError, UserInputError) as e:
            return str(e)

    if len(uris) <= 2:
        return [one(u) for u in uris]
    from concurrent.futures import ThreadPoolExecutor

    first = one(uris[0])
    with ThreadPoolExecutor(max_workers=min(8, len(uris) - 1)) as pool:
        return [first, *pool.map(one, uris[1:])]


def make_plan(
    stack: Stack,
    names: list[str] | None = None,
    *,
    registry: Registry | None,
    use_cache: bool = True,
) -> Plan:
    """The plan for ``names`` and their ancestors (default: all). ``registry=None``
    plans offline: an image is up to date when its tag is the last one built here."""
    fps = fingerprints(stack, names, use_cache=use_cache)
    asked = [n for n in fps if stack.images[n].repository] if registry is not None else []
    answers = _ask(registry, [fps[n].uri for n in asked]) if registry is not None else []
    answer = dict(zip(asked, answers, strict=True))
    items: list[PlanItem] = []
    by_name: dict[str, PlanItem] = {}
    for name, fp in fps.items():
        image = stack.images[name]
        in_registry: bool | None = None
        error: str | None = None
        if name in answer:
            got = answer[name]
            in_registry, error = (got, None) if isinstance(got, bool) else (None, got)
        record = load_record(stack, name)
        pushed_here = record is not None and record.pushed and record.fingerprint.tag == fp.tag
        state, changes, note = _state(image, fp, in_registry, record, by_name)
        if error is not None and not (state is State.UP_TO_DATE and pushed_here):
            state, note = State.UNKNOWN, error
        elif image.repository is None and registry is not None:
            note = note or "no repository configured"
        if state is State.NOT_IN_REGISTRY and in_registry is None and error is None:
            # Nobody asked a registry: "not in registry" would be a guess.
            state = State.NOT_BUILT
            note = note or ("no repository configured" if image.repository is None else "--offline")
        item = PlanItem(image, fp, state, changes, note, in_registry, pushed_here)
        items.append(item)
        by_name[name] = item
    return Plan(stack, items)
