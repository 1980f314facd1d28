"""PyTorch Lightning under relaunch: a tiny MLP on synthetic data, a resumable
dataloader (torchdata's StatefulDataLoader) so a resumed epoch continues with the very
next batch, last.ckpt reported, the notice handled.

    python train.py --steps 40 --every 5 --out final.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time

import lightning as L
import torch
from torchdata.stateful_dataloader import StatefulDataLoader

from relaunch.integrations.lightning import RelaunchCheckpoint, last_checkpoint

CONFIG = {"inputs": 16, "hidden": 32, "lr": 0.05, "batch": 16}


class Model(L.LightningModule):
    def __init__(self, step_time: float) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(CONFIG["inputs"], CONFIG["hidden"]), torch.nn.Tanh(),
            torch.nn.Linear(CONFIG["hidden"], 1),
        )  # fmt: skip
        self.step_time = step_time

    def training_step(self, batch: list[torch.Tensor], i: int) -> torch.Tensor:
        x, y = batch
        time.sleep(self.step_time)
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=CONFIG["lr"])


def checksum(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--every", type=int, default=5)
    p.add_argument("--step-time", type=float, default=0.05)
    p.add_argument("--out", default="final.json")
    a = p.parse_args()
    L.seed_everything(0, verbose=False)
    data = torch.randn(160, CONFIG["inputs"], generator=torch.Generator().manual_seed(1))
    dataset = torch.utils.data.TensorDataset(data, data.sum(dim=1, keepdim=True).sin())
    loader = StatefulDataLoader(dataset, batch_size=CONFIG["batch"], shuffle=True)
    model = Model(a.step_time)
    trainer = L.Trainer(
        max_steps=a.steps, accelerator="cpu", devices=1, logger=False,
        enable_progress_bar=False, enable_model_summary=False,
        callbacks=[RelaunchCheckpoint(every_n_train_steps=a.every)],
    )  # fmt: skip
    resume = last_checkpoint()
    if resume:
        print(f"resumed from {resume}", flush=True)
    trainer.fit(model, train_dataloaders=loader, ckpt_path=resume)
    if trainer.global_step >= a.steps:
        with open(a.out, "w") as f:
            json.dump({"step": trainer.global_step, "checksum": checksum(model)}, f)
        print(f"finished at step {trainer.global_step}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
