"""Small helpers that make a framework's trainer resume exactly under relaunch.

Each module imports its framework only when used, and relaunch itself depends on none:
install the extra you need (``relaunch[torch]``, ``[hf]``, ``[lightning]``,
``[accelerate]``, ``[wandb]``).

- :mod:`relaunch.integrations.torch`: ``save_last`` / ``load_last`` — an atomic
  ``last.pt`` (write, fsync, rename) with the RNG states, reported to relaunch.
- :mod:`relaunch.integrations.hf`: a ``transformers.TrainerCallback`` and
  ``latest_checkpoint`` (the newest *complete* ``checkpoint-N``).
- :mod:`relaunch.integrations.lightning`: a ``ModelCheckpoint`` that reports
  ``last.ckpt`` and saves it on the preemption notice.
- :mod:`relaunch.integrations.accelerate`: ``save_state`` / ``load_state`` around
  ``Accelerator.save_state`` that report the state folder.
- :mod:`relaunch.integrations.wandb`: continue the same W&B run in every attempt, log
  with explicit steps, finish the run on the notice.

Outside relaunch they all work too (checkpoints go to ``./checkpoints``).
"""

from relaunch.integrations.notice import checkpoint_dir, notice_received, on_notice

__all__ = ["checkpoint_dir", "notice_received", "on_notice"]
