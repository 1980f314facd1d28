"""PyTorch Lightning under relaunch.

    from relaunch.integrations.lightning import RelaunchCheckpoint, last_checkpoint
    trainer = L.Trainer(max_steps=..., callbacks=[RelaunchCheckpoint(every_n_train_steps=50)])
    trainer.fit(model, train_dataloaders=loader, ckpt_path=last_checkpoint())

``RelaunchCheckpoint`` is a ``ModelCheckpoint`` (``save_last=True``, into
``$RELAUNCH_CHECKPOINT_DIR``) that reports progress every step and ``last.ckpt`` after
each save, and on the preemption notice saves ``last.ckpt`` at the end of the current
step — the same mid-epoch save as ``every_n_train_steps``, so with a resumable
dataloader (``torchdata.stateful_dataloader.StatefulDataLoader``) the next attempt
resumes exactly; ``save_on_exception`` stays on as a backstop for Lightning's own
SIGTERM handling. ``last_checkpoint()`` is ``last.ckpt`` when there is one, else None.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relaunch.integrations.notice import checkpoint_dir, notice_received
from relaunch.runtime.progress import report

LAST = "last.ckpt"


def last_checkpoint(folder: str | Path | None = None) -> str | None:
    path = (Path(folder) if folder is not None else checkpoint_dir()) / LAST
    return str(path) if path.is_file() else None


class _Hooks:
    """The behaviour; :func:`RelaunchCheckpoint` mixes it into Lightning's
    ``ModelCheckpoint`` so this module imports Lightning lazily."""

    def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any, **kw: Any) -> None:
        super().on_train_batch_end(trainer, pl_module, *args, **kw)  # type: ignore[misc]
        step = int(trainer.global_step)
        total = int(trainer.max_steps) if trainer.max_steps and trainer.max_steps > 0 else None
        if trainer.is_global_zero:
            report(step, total)
        if notice_received() and getattr(self, "_last_global_step_saved", None) != step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))  # type: ignore[attr-defined]
            trainer.should_stop = True

    def _save_checkpoint(self, trainer: Any, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)  # type: ignore[misc]
        if not trainer.is_global_zero:
            return
        if getattr(self, "save_last", None) and Path(filepath).name != LAST:
            return  # the named copies come and go; last.ckpt is what resumes
        try:
            rel = Path(filepath).resolve().relative_to(checkpoint_dir().resolve()).as_posix()
        except ValueError:
            return
        max_steps = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        report(int(trainer.global_step), max_steps, checkpoint=True, path=rel)


def RelaunchCheckpoint(**kwargs: Any) -> Any:
    """A ``lightning.pytorch.callbacks.ModelCheckpoint`` reporting to relaunch."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    notice_received()  # install the notice handler before Lightning chains it
    kwargs.setdefault("dirpath", str(checkpoint_dir()))
    kwargs.setdefault("save_last", True)
    kwargs.setdefault("save_top_k", 0)
    kwargs.setdefault("save_on_exception", True)
    kwargs.setdefault("enable_version_counter", False)
    cls = type("RelaunchCheckpoint", (_Hooks, ModelCheckpoint), {})
    return cls(**kwargs)
