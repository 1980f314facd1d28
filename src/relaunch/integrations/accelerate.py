"""accelerate under relaunch (``accelerate launch train.py``).

    from relaunch.integrations.accelerate import load_state, save_state
    step = load_state(accelerator)          # 0 on a fresh run
    loader = accelerator.skip_first_batches(loader, step % len(loader))
    ...
    if step % 100 == 0 or notice_received():
        save_state(accelerator, step=step)

``save_state`` runs ``Accelerator.save_state`` into a new folder, then (main process)
renames it over ``state/`` — a crash at any instant leaves the old or the new state,
never a mix — and reports it. relaunch sends the notice to every process that
``accelerate launch`` started.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from relaunch.integrations.notice import checkpoint_dir
from relaunch.runtime.progress import report

STATE = "state"


def save_state(accelerator: Any, *, step: int, total: int | None = None, name: str = STATE) -> Path:
    """Save the accelerator's state (models, optimizers, RNGs…) with ``step``."""
    root = checkpoint_dir()
    final, fresh, old = root / name, root / f".{name}.new", root / f".{name}.old"
    if accelerator.is_main_process:
        shutil.rmtree(fresh, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(fresh))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (fresh / "relaunch_step.json").write_text(json.dumps({"step": int(step)}))
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(fresh, final)
        shutil.rmtree(old, ignore_errors=True)
        report(int(step), total, checkpoint=True, path=name)
    accelerator.wait_for_everyone()
    return final


def load_state(accelerator: Any, name: str = STATE) -> int:
    """Load the saved state; the step it holds (0 on a fresh run)."""
    folder = checkpoint_dir() / name
    if not (folder / "relaunch_step.json").is_file():
        return 0
    accelerator.load_state(str(folder))
    return int(json.loads((folder / "relaunch_step.json").read_text())["step"])
