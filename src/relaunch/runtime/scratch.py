"""The attempt's scratch folder after the command: what the runtime leaves behind.

The scratch folder holds the runtime's working files — the output log before it is
shipped, the progress file, and (unless the job names its own ``checkpoints.dir``)
the checkpoint folder, a full copy of the checkpoint whose file names may hold a
secret. Once the attempt's log and result are in the store nothing there is needed:

- a folder the runtime made itself (no ``RELAUNCH_SCRATCH``: a cloud job) is removed;
- a folder the backend gave it loses the checkpoint copy at once and gets the
  :data:`STORED` marker, which tells the backend it may remove the whole folder when
  it finds the attempt ended (the local backend keeps the runtime's raw output there
  while the attempt runs: ``relaunch logs --cloud``).

When something could not be stored the folder stays as it is, for a look at what
happened. A ``checkpoints.dir`` of the job's own is never touched here.
"""

from __future__ import annotations

import shutil

from relaunch.runtime.config import RuntimeConfig

STORED = "stored"  # marker: the attempt's log and result are in the store


def tidy_scratch(cfg: RuntimeConfig, *, stored: bool) -> None:
    """Leave the scratch folder as the module docstring says (``stored``: the log and
    the result are in the store, or this runtime had nothing to write)."""
    if not stored:
        return
    scratch = cfg.scratch
    if cfg.scratch_made_here:
        shutil.rmtree(scratch, ignore_errors=True)
        return
    ckpt = cfg.checkpoint_dir.resolve()
    if not cfg.job_dir and ckpt != scratch.resolve() and ckpt.is_relative_to(scratch.resolve()):
        shutil.rmtree(ckpt, ignore_errors=True)
    try:
        (scratch / STORED).touch()
    except OSError:
        pass
