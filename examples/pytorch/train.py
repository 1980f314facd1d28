"""Plain PyTorch under relaunch: a tiny MLP on synthetic data, an atomic ``last.pt``
with the RNG states, the preemption notice handled, W&B continued across attempts.

    python train.py --steps 60 --every 10 --out final.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time

import torch

from relaunch.integrations import notice_received
from relaunch.integrations.torch import load_last, save_last
from relaunch.runtime import report

CONFIG = {"inputs": 16, "hidden": 32, "outputs": 1, "lr": 0.05, "batch": 32}


def build(config: dict[str, float]) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(int(config["inputs"]), int(config["hidden"])),
        torch.nn.Tanh(),
        torch.nn.Linear(int(config["hidden"]), int(config["outputs"])),
    )


def checksum(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--step-time", type=float, default=0.05)
    p.add_argument("--out", default="final.json")
    p.add_argument("--wandb", action="store_true", help="log to W&B (WANDB_MODE=offline works)")
    a = p.parse_args()
    notice_received()  # catch the notice from the start
    torch.manual_seed(0)
    data = torch.randn(512, CONFIG["inputs"], generator=torch.Generator().manual_seed(1))
    target = data.sum(dim=1, keepdim=True).sin()
    model = build(CONFIG)
    opt = torch.optim.SGD(model.parameters(), lr=CONFIG["lr"])
    start = 0
    ckpt = load_last()  # None on a fresh run; puts the RNG states back
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        start = ckpt["step"]
        print(f"resumed from step {start}", flush=True)
    if a.wandb:
        from relaunch.integrations import wandb as rw

        rw.init(project="relaunch-example", config=CONFIG)
    step = start
    while step < a.steps:
        batch = torch.randint(0, len(data), (int(CONFIG["batch"]),))  # torch RNG: restored
        loss = torch.nn.functional.mse_loss(model(data[batch]), target[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        time.sleep(a.step_time)
        report(step, a.steps)
        if a.wandb:
            rw.log({"loss": loss.item()}, step=step)
        if step % a.every == 0 or step == a.steps or notice_received():
            save_last({"model": model.state_dict(), "opt": opt.state_dict()}, step=step,
                      total=a.steps)  # fmt: skip
        if notice_received():
            print(f"notice: saved at step {step}", flush=True)
            if a.wandb:
                rw.finish()
            return 0
    with open(a.out, "w") as f:
        json.dump({"step": step, "checksum": checksum(model), "pid": os.getpid()}, f)
    print(f"finished at step {step}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
