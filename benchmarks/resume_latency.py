"""With an agent running: `Workspace.resume` of a stopped run → its next trainer started.

Each round submits a run (timed: enqueue → trainer started, the baseline in the same
run), stops it once its trainer runs (the trainer checkpoints on SIGTERM), resumes it
(timed: the resume call alone, and resume → the next attempt's trainer started, which
must begin at the step the first one saved), then stops it again. Target: a resume
costs no more than a fresh run — resume → trainer started p50 within 0.1 s of the
baseline's p50 — and no round starts anywhere but at the saved step.

    python benchmarks/resume_latency.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _agent import Bench
from _common import emit, summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    fresh, call, resumed, lost = [], [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        try:
            bench.start_agent("--max-jobs", "4")
            job = bench.job(steps=1_000_000, step_time=0.01)
            for _ in range(args.rounds):
                t0 = time.time()
                run_id = bench.ws.submit(job)
                fresh.append(bench.marker(run_id, 1, "start")["time"] - t0)
                time.sleep(0.2)  # a few steps, so the checkpoint is not step 0
                bench.ws.stop(run_id, wait=60)
                saved = bench.marker(run_id, 1, "term")["step"]
                t0 = time.time()
                bench.ws.resume(run_id)
                call.append(time.time() - t0)
                start = bench.marker(run_id, 2, "start")
                resumed.append(start["time"] - t0)
                lost += start["step"] != saved
                bench.ws.stop(run_id, wait=60)
        finally:
            bench.close()
    result = {
        "benchmark": "resume_latency",
        "rounds": args.rounds,
        "resume_to_trainer_start_s": summary(resumed),
        "resume_call_s": summary(call),
        "baseline_enqueue_to_trainer_start_s": summary(fresh),
        "rounds_not_at_the_saved_step": lost,
        "target": "resume p50 <= baseline p50 + 0.1 s, 0 rounds off the saved step",
    }
    slack = summary(resumed)["p50"] - summary(fresh)["p50"]
    result["resume_minus_baseline_p50_s"] = round(slack, 4)
    result["met"] = slack <= 0.1 and not lost
    emit(result)


if __name__ == "__main__":
    main()
