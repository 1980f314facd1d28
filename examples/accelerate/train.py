"""accelerate under relaunch: ``accelerate launch train.py``; a tiny MLP on synthetic
data, ``save_state``/``load_state`` reported to relaunch, the notice handled.

    accelerate launch --cpu --num_processes 1 train.py --steps 40 --out final.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed

from relaunch.integrations import notice_received
from relaunch.integrations.accelerate import load_state, save_state
from relaunch.runtime import report

CONFIG = {"inputs": 16, "hidden": 32, "lr": 0.05, "batch": 16}


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
    notice_received()
    set_seed(0)
    # a seedable sampler: each epoch's order depends on the seed and the epoch alone, so
    # skip_first_batches continues a resumed epoch with the very next batch
    accelerator = Accelerator(
        cpu=True, dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True)
    )
    data = torch.randn(160, CONFIG["inputs"], generator=torch.Generator().manual_seed(1))
    target = data.sum(dim=1, keepdim=True).sin()
    dataset = torch.utils.data.TensorDataset(data, target)
    loader = torch.utils.data.DataLoader(dataset, batch_size=CONFIG["batch"], shuffle=True)
    model = torch.nn.Sequential(
        torch.nn.Linear(CONFIG["inputs"], CONFIG["hidden"]), torch.nn.Tanh(),
        torch.nn.Linear(CONFIG["hidden"], 1),
    )  # fmt: skip
    opt = torch.optim.SGD(model.parameters(), lr=CONFIG["lr"])
    model, opt, loader = accelerator.prepare(model, opt, loader)
    step = load_state(accelerator)  # 0 on a fresh run; RNG states come back too
    if step:
        print(f"resumed from step {step}", flush=True)
    per_epoch = len(loader)
    while step < a.steps:
        loader.set_epoch(step // per_epoch)  # before skipping: the order is the epoch's
        epoch_loader = loader
        if step % per_epoch:
            epoch_loader = accelerator.skip_first_batches(loader, step % per_epoch)
        for x, y in epoch_loader:
            loss = torch.nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            accelerator.backward(loss)
            opt.step()
            step += 1
            time.sleep(a.step_time)
            if accelerator.is_main_process:
                report(step, a.steps)
            if step % a.every == 0 or step == a.steps or notice_received():
                save_state(accelerator, step=step, total=a.steps)
            if notice_received():
                print(f"notice: saved at step {step}", flush=True)
                return 0
            if step >= a.steps:
                break
    if accelerator.is_main_process:
        with open(a.out, "w") as f:
            json.dump({"step": step, "checksum": checksum(accelerator.unwrap_model(model))}, f)
        print(f"finished at step {step}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
