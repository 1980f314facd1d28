"""Benchmark trainer: stamps the moment it starts, checkpoints on SIGTERM.

    python _trainer.py MARKERS [--steps N] [--step-time S] [--blob-mb M]

Standard library only (plus relaunch.runtime.report), imported after the start stamp.
"""

from __future__ import annotations

import time

STARTED = time.time()

import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402


def main() -> int:
    markers = Path(sys.argv[1])
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    step_time = float(sys.argv[3]) if len(sys.argv) > 3 else 0.01
    blob_mb = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    tag = f"{os.environ['RELAUNCH_RUN_ID']}.{os.environ['RELAUNCH_ATTEMPT']}"
    ckpt = Path(os.environ["RELAUNCH_CHECKPOINT_DIR"])
    state = ckpt / "state.json"
    step = json.loads(state.read_text())["step"] if state.exists() else 0
    markers.mkdir(parents=True, exist_ok=True)
    (markers / f"{tag}.start").write_text(json.dumps({"time": STARTED, "step": step}))

    from relaunch.runtime import report

    def on_term(*_: object) -> None:
        if blob_mb:
            blob = ckpt / "weights.bin"
            with open(str(blob) + ".tmp", "wb") as f:
                f.write(os.urandom(1 << 20) * blob_mb)
            os.replace(str(blob) + ".tmp", blob)
        state.write_text(json.dumps({"step": step}))
        report(step=step, total=steps, checkpoint=True)
        (markers / f"{tag}.term").write_text(json.dumps({"time": time.time(), "step": step}))
        sys.exit(143)

    signal.signal(signal.SIGTERM, on_term)
    while step < steps:
        time.sleep(step_time)
        step += 1
        report(step=step, total=steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
