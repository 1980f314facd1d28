"""Plain PyTorch: an atomic ``last.pt`` with the RNG states, reported to relaunch.

    from relaunch.integrations.torch import load_last, save_last
    ckpt = load_last()                      # None on a fresh run
    start = 0 if ckpt is None else ckpt["step"]
    if ckpt: model.load_state_dict(ckpt["model"]); opt.load_state_dict(ckpt["opt"])
    for step in range(start, total):
        ...
        if (step + 1) % 100 == 0 or notice_received():
            save_last({"model": model.state_dict(), "opt": opt.state_dict()}, step=step + 1)

``save_last`` writes a temporary file, fsyncs it, renames it over ``last.pt`` and fsyncs
the folder, so a crash at any instant leaves the old or the new file, never half of
one; then it reports the checkpoint (relaunch commits it at once). ``load_last`` also
puts back the Python, NumPy and torch RNG states, so a resumed run draws the same
numbers an uninterrupted one would.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from relaunch.integrations.notice import checkpoint_dir
from relaunch.runtime.progress import report

LAST = "last.pt"


def rng_states() -> dict[str, Any]:
    import torch

    states: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np

        states["numpy"] = np.random.get_state()
    except ImportError:
        pass
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    import torch

    random.setstate(states["python"])
    torch.set_rng_state(states["torch"])
    if "numpy" in states:
        import numpy as np

        np.random.set_state(states["numpy"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_last(
    state: dict[str, Any], *, step: int, total: int | None = None, path: Path | None = None
) -> Path:
    """Save ``state`` (+ ``step`` and the RNG states) atomically; report it."""
    import torch

    path = Path(path) if path is not None else checkpoint_dir() / LAST
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        torch.save({**state, "step": int(step), "rng": rng_states()}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    try:
        rel = path.resolve().relative_to(checkpoint_dir().resolve()).as_posix()
    except ValueError:
        rel = None  # outside the checkpoint folder: relaunch cannot commit it
    if rel is not None:
        report(int(step), total, checkpoint=True, path=rel)
    return path


def load_last(
    path: Path | None = None, *, restore_rng: bool = True, map_location: Any = "cpu"
) -> dict[str, Any] | None:
    """The saved state (with ``step``), or None on a fresh run."""
    import torch

    path = Path(path) if path is not None else checkpoint_dir() / LAST
    if not path.exists():
        return None
    state: dict[str, Any] = torch.load(path, map_location=map_location, weights_only=False)
    if restore_rng and "rng" in state:
        set_rng_states(state["rng"])
    return state
