"""One agent owning many running runs on a local store: tick time, agent CPU per run per
tick, and the store operations it makes per run-hour (priced as Cloud Storage would).

    python benchmarks/agent_scale.py --runs 200 --ticks 40

The agent ticks in this process (so its ticks can be timed and its store calls counted)
over N runs whose trainers sleep and report a step per second under the real runtime.
Baseline in the same run: reading the same objects of every run with plain ``open()``
(the floor for a tick that looks at every run). Targets (issue "an agent that scales"):
tick p95 ≤ 0.25 s with 1,000 runs, ≤ 1 ms of agent CPU per run per tick.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _agent import Bench
from _common import emit, summary
from _gcs_ops import CountingStore, plain_read, usd

from relaunch.agent.loop import Agent, AgentOptions

GS_TICK = 5.0  # an agent's default tick on a gs:// store (seconds)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--ticks", type=int, default=40)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="relaunch-scale-") as tmp:
        bench = Bench(Path(tmp))
        job = bench.job(steps=100_000, step_time=1.0, heartbeat_interval=10)
        rids = [bench.ws.submit(job) for _ in range(args.runs)]
        store = CountingStore(bench.ws.store)
        agent = Agent(
            store,
            AgentOptions(max_jobs=args.runs, poll=0.25, lease_ttl=30),
            log=lambda _m: None,
        )
        try:
            deadline = time.monotonic() + 60 + args.runs
            while True:
                agent.tick()
                running = sum(1 for s in bench.ws.summaries() if s.state == "RUNNING")
                if running == args.runs:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {running}/{args.runs} runs started")
                time.sleep(0.25)
            store.clear()
            window = time.monotonic()
            walls, cpus = [], []
            for _ in range(args.ticks):
                wall, cpu = time.perf_counter(), time.thread_time()
                agent.tick()
                walls.append(time.perf_counter() - wall)
                cpus.append(time.thread_time() - cpu)
                time.sleep(max(0.0, 0.25 - walls[-1]))
            ops = Counter(store.ops)
            kinds = Counter(store.kinds)
            window = time.monotonic() - window
            floor = [plain_read(Path(tmp) / "store", rids) for _ in range(5)]
        finally:
            agent.stopping.set()
            threading.Thread(target=agent.shutdown).start()
            bench.close()
    per_tick = {k: v / args.ticks for k, v in ops.items()}
    # Per run-hour on a gs:// store, where the agent ticks every GS_TICK seconds: reads
    # are made per tick; writes (lease renewals, the agent's own record) per second.
    hourly = {
        "B": per_tick.get("B", 0) / args.runs * 3600 / GS_TICK,
        "A": ops.get("A", 0) / args.runs / window * 3600,
    }
    price = usd(hourly)
    cpu_per_run = summary(cpus)["p50"] / args.runs
    floor_p50 = summary(floor)["p50"]
    emit(
        {
            "benchmark": "agent_scale",
            "runs": args.runs,
            "tick_wall_s": summary(walls),
            "tick_cpu_s": summary(cpus),
            "agent_cpu_ms_per_run_per_tick": round(cpu_per_run * 1000, 3),
            "baseline_plain_read_s": floor_p50,
            "tick_cpu_vs_plain_read": round(summary(cpus)["p50"] / floor_p50, 2),
            "store_ops_per_tick": per_tick,
            "store_ops_per_tick_by_kind": {
                k: round(v / args.ticks, 2) for k, v in sorted(kinds.items())
            },
            "agent_ops_per_run_hour_on_gs": {k: round(v) for k, v in hourly.items()},
            "agent_usd_per_run_hour_on_gs": round(price, 5),
            "met": {
                "tick_p95_le_0.25s": summary(walls)["p95"] <= 0.25,
                "cpu_le_1ms_per_run_tick": cpu_per_run <= 0.001,
            },
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
