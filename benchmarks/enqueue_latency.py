"""With an agent running: enqueue → trainer process started, p50/p95 over N runs.

Baseline in the same run: starting the same trainer directly with Popen (what any
launcher pays for a Python process). Target: p50 ≤ 0.5 s.

    python benchmarks/enqueue_latency.py [--runs 50]
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
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        try:
            baseline = bench.direct_start_latency(min(args.runs, 20))
            bench.start_agent("--max-jobs", str(args.runs + 1))
            job = bench.job(steps=1, step_time=0)
            latencies = []
            for _ in range(args.runs):
                t0 = time.time()
                run_id = bench.ws.submit(job)
                latencies.append(bench.marker(run_id, 1, "start")["time"] - t0)
        finally:
            bench.close()
    result = {
        "benchmark": "enqueue_latency",
        "runs": args.runs,
        "enqueue_to_trainer_start_s": summary(latencies),
        "baseline_direct_popen_to_trainer_start_s": summary(baseline),
        "target_p50_s": 0.5,
    }
    result["met"] = result["enqueue_to_trainer_start_s"]["p50"] <= 0.5  # type: ignore[index]
    emit(result)


if __name__ == "__main__":
    main()
