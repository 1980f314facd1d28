"""Checkpoints between a local folder and the store.

A commit uploads the checkpoint's files to ``checkpoints/<seq>/…``, then its manifest
to ``checkpoints/<seq>.json``, then writes ``checkpoints/LATEST`` (a copy of the
manifest) by compare-and-swap over the generation read before: a stale attempt still
running somewhere never overwrites a newer checkpoint, and a half-uploaded checkpoint
is never visible (LATEST is written last).

A manifest says which step the checkpoint holds (``step``: the trainer's report, or
``null`` when relaunch cannot know it — never a guess) and whether the trainer
reported it. Restore makes the folder hold exactly one committed checkpoint: LATEST,
or when LATEST cannot be restored (missing files, wrong sizes, garbage) the newest
older one that can (see :meth:`CheckpointSync.restore`). It empties only a folder the
run owns, never one with files of the user's in it (``folder.py``).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from relaunch.errors import ObjectNotFound, PreconditionFailed, RelaunchError
from relaunch.runs import keys
from relaunch.runtime.folder import clear_folder, run_is_over
from relaunch.store.base import ObjectStore

Snapshot = dict[str, tuple[int, int]]  # relative path → (size, mtime_ns)
_SKIP_SUFFIXES = (".tmp", ".part", ".partial", ".lock")
_SEQ_MANIFEST = re.compile(r"^(\d{8})\.json$")
STAGING = ".relaunch-staged"  # hard-linked copies of reported checkpoints (progress.py)


class Superseded(Exception):
    """A newer attempt owns the checkpoints now; this one must stop committing."""


class Unrestorable(RelaunchError):
    """Committed checkpoints exist, but none of them can be restored."""


@dataclass
class Restored:
    seq: int
    step: int | None
    reported: bool
    skipped: list[str] = field(default_factory=list)  # why newer ones were passed over


def _key_part(rel: str) -> str:
    return "/".join(quote(p, safe="._=+@,-") for p in rel.split("/"))


def _secret_token(name: str) -> str:
    return f"[secret:{name}]"


def mask_secrets(rel: str, secrets: dict[str, str]) -> str:
    """``rel`` with every secret value replaced by a token naming the secret: a trainer
    that puts its token in a file name must not put it in an object key or a manifest."""
    for name, value in sorted(secrets.items(), key=lambda kv: len(kv[1]), reverse=True):
        if len(value) >= 4 and "/" not in value:
            rel = rel.replace(value, _secret_token(name))
    return rel


def unmask_secrets(rel: str, secrets: dict[str, str]) -> str:
    """The file name a trainer wrote, from its masked form (the secrets' current values)."""
    for name, value in secrets.items():
        rel = rel.replace(_secret_token(name), value)
    return rel


def _rel_of(part: str) -> str:
    rel = "/".join(unquote(p) for p in str(part).split("/"))
    if rel.startswith("/") or ".." in rel.split("/") or not rel:
        raise ValueError(f"bad file name {part!r} in a checkpoint manifest")
    return rel


def snapshot_of(folder: Path, only: str | None = None) -> Snapshot:
    """Files under ``folder`` (or only under its sub-path ``only``), without hidden and
    temporary files."""
    out: Snapshot = {}
    top = folder / only if only else folder
    if top.is_file():
        st = top.stat()
        return {top.relative_to(folder).as_posix(): (st.st_size, st.st_mtime_ns)}
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith(".") or name.endswith(_SKIP_SUFFIXES):
                continue
            path = Path(root, name)
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            out[path.relative_to(folder).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out


class CheckpointSync:
    def __init__(
        self, store: ObjectStore, run_id: str, attempt: int, folder: Path, keep: int = 2
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.attempt = attempt
        self.folder = folder
        self.keep = max(1, keep)
        self.prefix = keys.checkpoints_prefix(run_id)
        self.committed: Snapshot = {}
        self.committed_step: int | None = None
        self.restored: Restored | None = None
        self.secrets: dict[str, str] = {}  # name → value, masked out of keys and manifests

    # -- reading ------------------------------------------------------------------

    def _latest(self) -> tuple[dict[str, Any] | None, int]:
        """LATEST and its generation; a LATEST that is not a manifest reads as absent
        for the next commit (its generation still guards the swap)."""
        try:
            data, gen = self.store.get(keys.latest_checkpoint_key(self.run_id))
        except ObjectNotFound:
            return None, 0
        try:
            latest = json.loads(data)
            int(latest["seq"])
        except (ValueError, KeyError, TypeError):
            return None, gen
        return latest, gen

    def _seq_manifests(self) -> list[int]:
        seqs = []
        for meta in self.store.list(self.prefix, delimiter="/").objects:
            m = _SEQ_MANIFEST.match(meta.key[len(self.prefix) :])
            if m:
                seqs.append(int(m.group(1)))
        return sorted(seqs, reverse=True)

    def _manifest(self, seq: int) -> dict[str, Any]:
        data, _ = self.store.get(f"{self.prefix}{seq:08d}.json")
        return dict(json.loads(data))

    def _is_over(self, run_id: str) -> bool:
        return run_is_over(self.store, run_id)

    def exists(self) -> bool:
        """Whether anything was ever committed for this run."""
        try:
            self.store.get(keys.latest_checkpoint_key(self.run_id))
            return True
        except ObjectNotFound:
            return bool(self._seq_manifests())

    # -- restore ------------------------------------------------------------------

    def restore(self, skip: frozenset[int] = frozenset()) -> Restored | None:
        """Make the folder hold exactly the newest committed checkpoint that can be
        restored (none committed: an empty folder, and None). Checkpoints in ``skip``
        (known to make the command fail) and ones that cannot be read are passed over,
        each with a line in ``Restored.skipped``; raises :class:`Unrestorable` when
        checkpoints exist but none can be restored, and ``FolderNotOurs`` (nothing
        deleted) when the folder holds files neither relaunch nor this run wrote."""
        clear_folder(self.folder, self.run_id, is_over=self._is_over)
        self.committed, self.committed_step, self.restored = {}, None, None
        latest, _ = self._latest()
        skipped: list[str] = []
        latest_seq: int | None = None
        candidates: list[tuple[int, dict[str, Any] | None]] = []
        if latest is not None:
            latest_seq = int(latest["seq"])
            candidates.append((latest_seq, latest))
        elif self.store.stat(keys.latest_checkpoint_key(self.run_id)) is not None:
            skipped.append("LATEST is not a checkpoint manifest")
        for seq in self._seq_manifests():
            if latest_seq is None or seq < latest_seq:
                candidates.append((seq, None))
        if not candidates and not skipped:
            return None
        for seq, manifest in candidates:
            if seq in skip:
                skipped.append(f"checkpoint {seq} made the command fail at once")
                continue
            try:
                manifest = manifest if manifest is not None else self._manifest(seq)
                self._download(seq, manifest)
            except (ObjectNotFound, ValueError, KeyError, TypeError, OSError) as e:
                skipped.append(f"checkpoint {seq} cannot be restored ({_short(e)})")
                clear_folder(self.folder, self.run_id, is_over=self._is_over)
                continue
            step = manifest.get("step")
            self.committed = snapshot_of(self.folder)
            self.committed_step = int(step) if isinstance(step, int) else None
            self.restored = Restored(seq, self.committed_step, bool(manifest.get("reported")))
            self.restored.skipped = skipped
            return self.restored
        raise Unrestorable(
            "no committed checkpoint can be restored: " + "; ".join(skipped),
            hint="look at `relaunch events RUN`; delete the run's checkpoints to start afresh",
        )

    def _download(self, seq: int, manifest: dict[str, Any]) -> None:
        if int(manifest["seq"]) != seq:
            raise ValueError(f"manifest names checkpoint {manifest['seq']}")
        files = manifest["files"]
        if not isinstance(files, dict):
            raise ValueError("manifest without a file list")
        for part, size in files.items():
            target = self.folder / unmask_secrets(_rel_of(part), self.secrets)
            self.store.download_file(f"{self.prefix}{seq:08d}/{part}", target)
            if target.stat().st_size != int(size):
                raise ValueError(f"{_rel_of(part)} has {target.stat().st_size} bytes, not {size}")

    # -- commit -------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        return snapshot_of(self.folder)

    def changed(self, snap: Snapshot | None = None) -> bool:
        snap = self.snapshot() if snap is None else snap
        return bool(snap) and snap != self.committed

    def commit(
        self,
        step: int | None,
        *,
        source: Path | None = None,
        only: str | None = None,
        reported: bool = False,
    ) -> int | None:
        """Commit files as the next checkpoint holding ``step`` (None: unknown); return
        its seq, or None when nothing changed since the last commit or a file changed
        while it was uploaded (that copy could be torn: nothing is committed).

        ``source`` is where the files are (default: the folder); a reported checkpoint
        comes from the hard-linked copy the trainer staged when it reported; ``only``
        commits just that file or folder inside it."""
        source = self.folder if source is None else source
        snap = snapshot_of(source, only)
        if not snap or (source == self.folder and snap == self.committed):
            return None
        latest, gen = self._latest()
        if latest is not None and int(latest.get("attempt", 0)) > self.attempt:
            raise Superseded(f"attempt {latest.get('attempt')} committed after this one")
        newest = max([int(latest["seq"])] if latest else [], default=0)
        seq = max([newest, *self._seq_manifests()[:1]]) + 1
        files: dict[str, int] = {}
        for rel, (size, _) in sorted(snap.items()):
            part = _key_part(mask_secrets(rel, self.secrets))
            self.store.upload_file(f"{self.prefix}{seq:08d}/{part}", source / rel)
            files[part] = size
        if snapshot_of(source, only) != snap:
            self._delete_seq(seq)
            return None
        manifest = {"seq": seq, "step": step, "attempt": self.attempt, "files": files,
                    "reported": reported, "time": time.time()}  # fmt: skip
        body = json.dumps(manifest).encode()
        self.store.put(f"{self.prefix}{seq:08d}.json", body)
        try:
            self.store.put(keys.latest_checkpoint_key(self.run_id), body, if_generation_match=gen)
        except PreconditionFailed:
            self._delete_seq(seq)
            raise Superseded("another writer committed a checkpoint at the same time") from None
        if source == self.folder and only is None:
            self.committed = snap
        self.committed_step = step
        self._prune(seq)
        return seq

    def point_latest_at(self, seq: int) -> None:
        """Make an older committed checkpoint LATEST again (the newer one made the
        command fail at once)."""
        _, gen = self._latest()
        body = json.dumps(self._manifest(seq)).encode()
        self.store.put(keys.latest_checkpoint_key(self.run_id), body, if_generation_match=gen)

    def _delete_seq(self, seq: int) -> None:
        for meta in self.store.list(f"{self.prefix}{seq:08d}/").objects:
            self.store.delete(meta.key)
        try:
            self.store.delete(f"{self.prefix}{seq:08d}.json")
        except ObjectNotFound:
            pass

    def _prune(self, newest: int) -> None:
        listing = self.store.list(self.prefix, delimiter="/")
        seqs = {int(p[len(self.prefix) : -1]) for p in listing.prefixes if p[-9:-1].isdigit()}
        seqs |= set(self._seq_manifests())
        for seq in seqs:
            if seq <= newest - self.keep:
                self._delete_seq(seq)


def _short(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text if len(text) < 160 else text[:157] + "…"
