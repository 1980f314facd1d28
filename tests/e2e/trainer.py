"""A tiny trainer for end-to-end tests (standard library only, starts fast).

Leaves a marker file per event in --markers (start, term, end) so tests can count how
many times each attempt really ran, and from which step.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from relaunch.runtime import report


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--step-time", type=float, default=0.02)
    p.add_argument("--every", type=int, default=5)
    p.add_argument("--raise-at", type=int)
    p.add_argument("--hang-at", type=int)
    p.add_argument("--markers", type=Path, required=True)
    p.add_argument("--ledger", type=Path, help="append a line per step: who ran it, when")
    p.add_argument("--kill-at", type=int, help="SIGKILL itself at this step (attempt 1 only)")
    args = p.parse_args()

    ckpt = Path(os.environ["RELAUNCH_CHECKPOINT_DIR"]) / "state.json"
    step = json.loads(ckpt.read_text())["step"] if ckpt.exists() else 0
    tag = f"{os.environ['RELAUNCH_RUN_ID']}.{os.environ['RELAUNCH_ATTEMPT']}"
    args.markers.mkdir(parents=True, exist_ok=True)

    def ledger(kind: str) -> None:
        if args.ledger is None:
            return
        line = json.dumps({"run": os.environ["RELAUNCH_RUN_ID"], "pid": os.getpid(),
                           "attempt": os.environ["RELAUNCH_ATTEMPT"], "kind": kind,
                           "step": step, "t": time.time()})  # fmt: skip
        fd = os.open(args.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())  # one write: lines never interleave
        finally:
            os.close(fd)

    def mark(kind: str) -> None:
        body = {
            "step": step,
            "time": time.time(),
            "pid": os.getpid(),
            "resumed": os.environ.get("RELAUNCH_RESUMED"),
            "wandb": os.environ.get("WANDB_RUN_ID"),
        }
        (args.markers / f"{tag}.{kind}").write_text(json.dumps(body))

    def save() -> None:
        tmp = ckpt.with_suffix(".tmp")
        tmp.write_text(json.dumps({"step": step}))
        os.replace(tmp, ckpt)
        report(step=step, total=args.steps, checkpoint=True)

    def on_term(*_: object) -> None:
        save()
        mark("term")
        print(f"SIGTERM at step {step}: saved", flush=True)
        sys.exit(143)

    signal.signal(signal.SIGTERM, on_term)
    mark("start")
    ledger("start")
    print(f"start at step {step}", flush=True)
    while step < args.steps:
        time.sleep(args.step_time)
        step += 1
        ledger("step")
        if args.kill_at == step and os.environ["RELAUNCH_ATTEMPT"] == "1":
            os.kill(os.getpid(), signal.SIGKILL)
        if args.raise_at == step:
            raise ValueError(f"boom at step {step}")
        if args.hang_at == step:
            time.sleep(3600)
        if step % args.every == 0:
            save()
        else:
            report(step=step, total=args.steps)
    save()
    ledger("end")
    mark("end")
    print(f"done at step {step}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
