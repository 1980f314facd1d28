"""When a checkpoint is complete enough to commit: the completeness rule.

A checkpoint becomes LATEST only when relaunch can tell it is complete:

1. **Reported** (``report(checkpoint=True)``, or an integration): committed at once, as
   reported, labelled with the reported step. Once a run has reported one checkpoint
   (in this attempt or any earlier one), *only* reported checkpoints are committed: a
   trainer that reports is never second-guessed by a scan of its folder.
2. **Unreported** (a trainer that never reports): the folder is committed when it is
   unchanged across two scans ``sync_interval`` apart, and when the command exits 0 by
   itself or exits by itself (status below 128) after the preemption notice. Its step
   is unknown (``null``), never guessed. Nothing unreported is committed after the
   command crashed, was killed, or died of a signal: those files may be half-written.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from relaunch.errors import StoreError
from relaunch.runtime.checkpoints import STAGING, CheckpointSync, Snapshot, Superseded
from relaunch.runtime.progress import read_progress_file

_RETRY = 1.0  # seconds between tries of a commit the store failed


class CommitPolicy:
    def __init__(
        self,
        sync: CheckpointSync,
        progress_file: Path,
        sync_interval: float,
        say: Callable[[str], None],
    ) -> None:
        self.sync = sync
        self.progress_file = progress_file
        self.sync_interval = sync_interval
        self.say = say
        self.reported = False  # this run's trainer reports its checkpoints
        self.superseded = False
        self.commits = 0  # commits made by this runtime since the command started
        self._handled: tuple[object, object] | None = None
        self._stable: Snapshot | None = None
        self._next_scan = float("inf")
        self._failed = False  # the last commit failed on a store error
        self._trouble = ""

    def start(self, now: float) -> None:
        """The command starts (again): forget what an earlier run of it reported."""
        restored = self.sync.restored
        self.reported = self.reported or bool(restored and restored.reported)
        self.commits, self._stable = 0, None
        self._handled = self._report_id(read_progress_file(str(self.progress_file)))
        self._next_scan = now + self.sync_interval if self.sync_interval > 0 else float("inf")

    def next_due(self, now: float) -> float:
        """When :meth:`tick` has something to do besides new reports (which the
        runtime is woken for): the next scan of an unreported folder, or a retry of a
        commit the store failed."""
        if self._failed:
            return now + _RETRY
        return self._next_scan if not self.reported else float("inf")

    @staticmethod
    def _report_id(progress: dict[str, int | str | None]) -> tuple[object, object] | None:
        if progress.get("checkpoint_step") is None:
            return None
        return (progress.get("checkpoint_step"), progress.get("checkpoint_id"))

    def tick(self, now: float, commit: bool = True) -> None:
        """Commit a new report, or (unreported trainers) a folder stable across scans.
        With ``commit`` False (a replica that does not lead, checkpoints off, a fenced
        runtime) reports are only acknowledged: their staged links are dropped, so they
        never keep deleted checkpoints alive on disk."""
        progress = read_progress_file(str(self.progress_file))
        ident = self._report_id(progress)
        if ident is not None and ident != self._handled and not commit:
            self._handled = ident
            stage = progress.get("checkpoint_stage")
            if isinstance(stage, str) and Path(stage).parent.name == STAGING:
                self._drop_stages_up_to(Path(stage))
            return
        if not commit:
            return
        if ident is not None and ident != self._handled:
            self._handled = ident
            self.reported = True
            if not self._commit_reported(progress):
                self._handled = None  # the store failed: try this report again
        elif now >= self._next_scan and not self.reported:
            snap = self.sync.snapshot()
            if snap == self._stable and self.sync.changed(snap):
                self._commit(None, reported=False)
            self._stable, self._next_scan = snap, now + self.sync_interval

    def at_exit(self, exit_code: int, noticed: bool, killed: bool, commit: bool = True) -> None:
        """The command is over: commit a report it made in its last instant; an
        unreported folder only when the command ended by itself, cleanly."""
        if not commit:
            shutil.rmtree(self.sync.folder / STAGING, ignore_errors=True)
            return
        for _ in range(3):  # a store error: try again a little, the machine may go soon
            self._failed = False
            self.tick(float("-inf"))
            if not self._failed:
                break
            time.sleep(2.0)
        clean = exit_code == 0 or (noticed and 0 < exit_code < 128)
        if not self.reported and clean and not killed and self.sync.changed():
            self._commit(None, reported=False)
        shutil.rmtree(self.sync.folder / STAGING, ignore_errors=True)

    def _commit_reported(self, progress: dict[str, int | str | None]) -> bool:
        """Commit a reported checkpoint; False when the store failed (try again)."""
        step = progress.get("checkpoint_step")
        step = step if isinstance(step, int) else None
        path = progress.get("checkpoint_path")
        stage = progress.get("checkpoint_stage")
        folder = self.sync.folder.resolve()
        only: str | None = None
        if isinstance(path, str) and path:
            target = (folder / path).resolve()
            if not target.is_relative_to(folder) or target == folder:
                self.say(
                    f"checkpoint at step {step} not committed: {path!r} is not inside {folder}"
                )
                return True
            only = target.relative_to(folder).as_posix()
        source: Path | None = None
        if isinstance(stage, str) and Path(stage).resolve().parent == folder / STAGING:
            source = Path(stage)
            if not source.is_dir():
                source = None
        if source is None and only is not None and not (folder / only).exists():
            self.say(f"checkpoint at step {step} not committed: {only} does not exist")
            return True
        self._commit(step, reported=True, source=source, only=None if source else only)
        if self._failed:
            return False
        if source is not None:
            self._drop_stages_up_to(source)
        return True

    def _drop_stages_up_to(self, stage: Path) -> None:
        def born(p: Path) -> int:
            parts = p.name.split("-")
            return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else 0

        if not stage.parent.is_dir():
            return
        for other in list(stage.parent.iterdir()):
            if born(other) <= born(stage):
                shutil.rmtree(other, ignore_errors=True)

    def _commit(
        self,
        step: int | None,
        *,
        reported: bool,
        source: Path | None = None,
        only: str | None = None,
    ) -> None:
        if self.superseded:
            return
        self._failed = False
        try:
            seq = self.sync.commit(step, source=source, only=only, reported=reported)
        except Superseded as e:
            self.superseded = True
            self.say(f"checkpoint not committed: {e}")
            return
        except StoreError as e:  # committed at the next tick, scan or exit
            self._failed = True
            if str(e) != self._trouble:
                self._trouble = str(e)
                self.say(f"checkpoint not committed yet: the store failed ({e}); retrying")
            return
        self._trouble = ""
        if seq is not None:
            self.commits += 1
            label = f"step {step}" if step is not None else "step unknown"
            self.say(f"checkpoint {seq} committed ({label})")
