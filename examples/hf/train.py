"""Hugging Face Trainer under relaunch: a tiny GPT-2 built from a config (nothing
downloaded), synthetic token data, checkpoints reported, the notice handled.

    python train.py --steps 30 --every 5 --out final.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time

import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from relaunch.integrations import checkpoint_dir
from relaunch.integrations.hf import RelaunchCallback, latest_checkpoint

CONFIG = GPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=1, n_head=2)


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n: int = 256) -> None:
        g = torch.Generator().manual_seed(1)
        self.ids = torch.randint(0, CONFIG.vocab_size, (n, 16), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class Pace(TrainerCallback):
    """Slows the steps down (--step-time), so a demo can be watched and preempted."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_step_end(self, args, state, control, **kw):  # type: ignore[no-untyped-def]
        time.sleep(self.seconds)


def checksum(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--every", type=int, default=5)
    p.add_argument("--step-time", type=float, default=0.0)
    p.add_argument("--out", default="final.json")
    a = p.parse_args()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(CONFIG)
    args = TrainingArguments(
        output_dir=str(checkpoint_dir()),
        max_steps=a.steps,
        save_steps=a.every,
        save_total_limit=2,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        logging_steps=5,
        report_to=[],
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Tokens(),
        callbacks=[RelaunchCallback(), Pace(a.step_time)],
    )
    resume = latest_checkpoint(args.output_dir)  # the newest *complete* checkpoint-N
    if resume:
        print(f"resumed from {resume}", flush=True)
    trainer.train(resume_from_checkpoint=resume)
    if trainer.state.global_step >= a.steps:
        with open(a.out, "w") as f:
            json.dump({"step": trainer.state.global_step, "checksum": checksum(model)}, f)
        print(f"finished at step {trainer.state.global_step}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
