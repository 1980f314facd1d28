"""A trainer for the runtime's tests: counts steps, saves ``state.txt`` (slowly when
asked, so a notice can land mid-save), reports or not, and marks each SIGTERM it gets."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from relaunch.runtime import report


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--every", type=int, default=5)
    p.add_argument("--step-time", type=float, default=0.02)
    p.add_argument("--save-time", type=float, default=0.0, help="pause in the middle of a save")
    p.add_argument("--no-report", action="store_true")
    p.add_argument("--ignore-term", action="store_true")
    p.add_argument("--markers", required=True)
    a = p.parse_args()
    markers = Path(a.markers)
    markers.mkdir(parents=True, exist_ok=True)
    folder = Path(os.environ["RELAUNCH_CHECKPOINT_DIR"])
    state = folder / "state.txt"
    step = 0
    if state.exists():
        text = state.read_text()
        if not text.endswith("\n"):
            print(f"half-written checkpoint {text!r}", flush=True)
            return 3
        step = int(text.split()[0])
    (markers / f"start-{os.getpid()}").write_text(
        f"{step} {os.environ.get('RELAUNCH_RESUME_STEP', '-')} {os.environ['RELAUNCH_RESUMED']}"
    )
    term = {"at": None}

    def on_term(*_: object) -> None:
        (markers / f"term-{os.getpid()}").write_text(str(step))
        term["at"] = step

    signal.signal(signal.SIGTERM, signal.SIG_IGN if a.ignore_term else on_term)
    if a.ignore_term:
        signal.signal(signal.SIGTERM, lambda *_: (markers / f"term-{os.getpid()}").write_text("x"))

    def save() -> None:
        with open(state, "w") as f:
            f.write(f"{step} ")
            f.flush()
            time.sleep(a.save_time)
            f.write("done\n")
        if not a.no_report:
            report(step, a.steps, checkpoint=True)

    while step < a.steps:
        time.sleep(a.step_time)
        step += 1
        if not a.no_report:
            report(step, a.steps)
        if step % a.every == 0 or step == a.steps:
            save()
        if term["at"] is not None and not a.ignore_term:
            save()
            (markers / f"saved-{os.getpid()}").write_text(str(step))
            print(f"saved at step {step} after SIGTERM", flush=True)
            return 0
    print("finished", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
