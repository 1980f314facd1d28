"""Checkpoints between a local folder and the store.

A commit uploads every file of the folder to ``checkpoints/<seq>/…`` and then writes
``checkpoints/LATEST`` — by compare-and-swap over the generation read before, so a
stale attempt still running somewhere can never overwrite a newer checkpoint, and a
half-uploaded checkpoint is never visible (LATEST is written last).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from relaunch.errors import ObjectNotFound, PreconditionFailed
from relaunch.runs import keys
from relaunch.store.base import ObjectStore

Snapshot = dict[str, tuple[int, int]]  # relative path → (size, mtime_ns)
_SKIP_SUFFIXES = (".tmp", ".part", ".partial", ".lock")


class Superseded(Exception):
    """A newer attempt owns the checkpoints now; this one must stop committing."""


def _key_part(rel: str) -> str:
    return "/".join(quote(p, safe="._=+@,-") for p in rel.split("/"))


def _secret_token(name: str) -> str:
    return f"[secret:{name}]"


def mask_secrets(rel: str, secrets: dict[str, str]) -> str:
    """``rel`` with every secret value replaced by a token naming the secret: a trainer
    that puts its token in a file name must not put it in an object key or LATEST."""
    for name, value in sorted(secrets.items(), key=lambda kv: len(kv[1]), reverse=True):
        if len(value) >= 4 and "/" not in value:
            rel = rel.replace(value, _secret_token(name))
    return rel


def unmask_secrets(rel: str, secrets: dict[str, str]) -> str:
    """The file name a trainer wrote, from its masked form (the secrets' current values)."""
    for name, value in secrets.items():
        rel = rel.replace(_secret_token(name), value)
    return rel


class CheckpointSync:
    def __init__(
        self, store: ObjectStore, run_id: str, attempt: int, folder: Path, keep: int = 2
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.attempt = attempt
        self.folder = folder
        self.keep = keep
        self.prefix = keys.checkpoints_prefix(run_id)
        self.committed: Snapshot = {}
        self.committed_step: int | None = None
        self.secrets: dict[str, str] = {}  # name → value, masked out of keys and LATEST

    def _latest(self) -> tuple[dict[str, Any] | None, int]:
        try:
            data, gen = self.store.get(keys.latest_checkpoint_key(self.run_id))
        except ObjectNotFound:
            return None, 0
        return json.loads(data), gen

    def restore(self) -> int | None:
        """Download the committed checkpoint into the folder; return its step (or None)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        latest, _ = self._latest()
        if latest is None:
            return None
        seq = int(latest["seq"])
        for part in latest.get("files", {}):
            rel = unmask_secrets("/".join(unquote(p) for p in str(part).split("/")), self.secrets)
            self.store.download_file(f"{self.prefix}{seq:08d}/{part}", self.folder / rel)
        self.committed = self.snapshot()
        step = latest.get("step")
        self.committed_step = int(step) if step is not None else None
        return self.committed_step if self.committed_step is not None else 0

    def snapshot(self) -> Snapshot:
        out: Snapshot = {}
        for root, dirs, files in os.walk(self.folder):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                if name.startswith(".") or name.endswith(_SKIP_SUFFIXES):
                    continue
                path = Path(root, name)
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                out[path.relative_to(self.folder).as_posix()] = (st.st_size, st.st_mtime_ns)
        return out

    def changed(self, snap: Snapshot | None = None) -> bool:
        snap = self.snapshot() if snap is None else snap
        return bool(snap) and snap != self.committed

    def commit(self, step: int | None, snap: Snapshot | None = None) -> int | None:
        """Commit the folder as the next checkpoint; return its seq (None if unchanged)."""
        snap = self.snapshot() if snap is None else snap
        if not self.changed(snap):
            return None
        latest, gen = self._latest()
        if latest is not None and int(latest.get("attempt", 0)) > self.attempt:
            raise Superseded(f"attempt {latest.get('attempt')} committed after this one")
        seq = int(latest["seq"]) + 1 if latest else 1
        files: dict[str, int] = {}
        for rel, (size, _) in sorted(snap.items()):
            part = _key_part(mask_secrets(rel, self.secrets))
            self.store.upload_file(f"{self.prefix}{seq:08d}/{part}", self.folder / rel)
            files[part] = size
        manifest = {
            "seq": seq,
            "step": step,
            "attempt": self.attempt,
            "files": files,
            "time": time.time(),
        }
        try:
            self.store.put(
                keys.latest_checkpoint_key(self.run_id),
                json.dumps(manifest).encode(),
                if_generation_match=gen,
            )
        except PreconditionFailed:
            self._delete_seq(seq)
            raise Superseded("another writer committed a checkpoint at the same time") from None
        self.committed, self.committed_step = snap, step
        self._prune(seq)
        return seq

    def _delete_seq(self, seq: int) -> None:
        for meta in self.store.list(f"{self.prefix}{seq:08d}/").objects:
            self.store.delete(meta.key)

    def _prune(self, newest: int) -> None:
        listing = self.store.list(self.prefix, delimiter="/")
        for folder in listing.prefixes:
            name = folder[len(self.prefix) : -1]
            if name.isdigit() and int(name) <= newest - self.keep:
                self._delete_seq(int(name))
