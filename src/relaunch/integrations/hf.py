"""Hugging Face ``transformers.Trainer`` under relaunch.

    from relaunch.integrations.hf import RelaunchCallback, latest_checkpoint
    args = TrainingArguments(output_dir=str(checkpoint_dir()), save_steps=50, ...)
    trainer = Trainer(..., callbacks=[RelaunchCallback()])
    trainer.train(resume_from_checkpoint=latest_checkpoint(args.output_dir))

The callback reports progress every step, reports each ``checkpoint-N`` after the
Trainer wrote it completely (``on_save``), and on the preemption notice makes the
Trainer save at the end of the current step and stop. ``latest_checkpoint`` finds the
newest *complete* ``checkpoint-N`` (one with its ``trainer_state.json``), or None.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from relaunch.integrations.notice import checkpoint_dir, notice_received
from relaunch.runtime.progress import report

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def latest_checkpoint(output_dir: str | Path | None = None) -> str | None:
    """The newest complete ``checkpoint-N`` folder in ``output_dir``, or None."""
    folder = Path(output_dir) if output_dir is not None else checkpoint_dir()
    if not folder.is_dir():
        return None
    found = []
    for entry in folder.iterdir():
        m = _CHECKPOINT.match(entry.name)
        if m and (entry / "trainer_state.json").is_file():
            found.append((int(m.group(1)), entry))
    return str(max(found)[1]) if found else None


def _callback_base() -> type:
    from transformers import TrainerCallback

    return TrainerCallback


class _Hooks:
    """The callback's behaviour; :func:`RelaunchCallback` mixes it into
    ``transformers.TrainerCallback`` so this module imports transformers lazily."""

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        notice_received()  # install the handler before the first step

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        report(int(state.global_step), int(state.max_steps) or None)
        if notice_received():
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        if not state.is_world_process_zero:
            return control
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if (folder / "trainer_state.json").is_file():
            try:
                rel = folder.resolve().relative_to(checkpoint_dir().resolve()).as_posix()
            except ValueError:
                return control  # saved outside the checkpoint folder: nothing to commit
            report(int(state.global_step), int(state.max_steps) or None, checkpoint=True,
                   path=rel)  # fmt: skip
        return control


def RelaunchCallback() -> Any:
    """A ``transformers.TrainerCallback`` that reports progress and checkpoints to
    relaunch and saves-and-stops on the preemption notice."""
    cls = type("RelaunchCallback", (_Hooks, _callback_base()), {})
    return cls()
