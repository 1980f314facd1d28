"""A small real trainer: logistic regression with NumPy on synthetic data.

It does what a spot-friendly trainer should: resumes from $RELAUNCH_CHECKPOINT_DIR,
checkpoints every --every steps and on SIGTERM (the preemption notice), and reports
its step to relaunch. Runs anywhere, downloads nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from relaunch.runtime import report


def make_data(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    true_w = rng.normal(size=dim)
    x = rng.normal(size=(n, dim))
    y = (x @ true_w + 0.3 * rng.normal(size=n) > 0).astype(np.float64)
    return x, y


def save(path: Path, step: int, w: np.ndarray, rng_state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")  # write, then rename: never half a file
    with open(tmp, "wb") as f:
        np.savez(f, step=step, w=w, rng=np.array([json.dumps(rng_state)]))
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--every", type=int, default=50, help="checkpoint every N steps")
    parser.add_argument("--step-time", type=float, default=0.02, help="seconds per step")
    parser.add_argument("--lr", type=float, default=0.5)
    args = parser.parse_args()

    ckpt_dir = Path(os.environ.get("RELAUNCH_CHECKPOINT_DIR", "checkpoints"))
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    last = ckpt_dir / "last.npz"
    x, y = make_data(4096, 32)
    rng = np.random.default_rng(1)
    w = np.zeros(x.shape[1])
    start = 0
    if last.exists():
        saved = np.load(last, allow_pickle=False)  # data only: a checkpoint runs no code
        start, w = int(saved["step"]), saved["w"]
        rng.bit_generator.state = json.loads(str(saved["rng"][0]))
        print(f"resumed from step {start}", flush=True)

    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))

    step = start
    while step < args.steps:
        batch = rng.integers(0, len(x), size=256)
        p = 1 / (1 + np.exp(-(x[batch] @ w)))
        w -= args.lr * x[batch].T @ (p - y[batch]) / len(batch)
        step += 1
        time.sleep(args.step_time)
        if step % args.every == 0 or step == args.steps:
            save(last, step, w, rng.bit_generator.state)
            report(step=step, total=args.steps, checkpoint=True)
        else:
            report(step=step, total=args.steps)
        if step % 50 == 0:
            acc = ((x @ w > 0) == (y > 0.5)).mean()
            print(f"step {step}/{args.steps} accuracy {acc:.3f}", flush=True)
        if stop["now"]:
            save(last, step, w, rng.bit_generator.state)
            report(step=step, total=args.steps, checkpoint=True)
            print(f"SIGTERM: checkpoint saved at step {step}, exiting", flush=True)
            return 143
    print(f"done: {step} steps, accuracy {((x @ w > 0) == (y > 0.5)).mean():.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
