"""`relaunch --help` and `relaunch ps` over 1,000 runs: wall time.

Baseline in the same run: `python -c pass` (the interpreter's own start-up) and
`python -c "import click"`. Targets: --help ≤ 0.15 s; ps over 1,000 runs ≤ 0.5 s.

    python benchmarks/cli_startup.py [--runs 20] [--n-runs 1000]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import emit, relaunch_argv, time_command

from relaunch.runs import keys
from relaunch.runs.records import Heartbeat, RunRecord
from relaunch.runs.repo import RunRepo
from relaunch.spec.loader import parse_job
from relaunch.states import Reason, RunState
from relaunch.store import LocalStore


def populate(store: LocalStore, n: int) -> None:
    """``n`` runs as an agent leaves them: 90% ended, 10% running with heartbeats."""
    repo = RunRepo(store)
    spec = parse_job("name: bench\ncommand: [python, train.py, --epochs, '10']\n", "bench")
    rng = random.Random(0)
    now = time.time()
    for i in range(n):
        running = i % 10 == 0
        run = RunRecord(
            run_id=f"bench-{i:05d}",
            name=f"bench-{i % 37}",
            queue="default",
            backend="local",
            spec=spec,
            attempt=rng.randint(1, 3),
            recoveries=rng.randint(0, 2),
            where="host-a",
            step=rng.randint(0, 5000),
            total=5000,
            created_at=now - rng.uniform(0, 80000),
        )
        if running:
            run.state = RunState.RUNNING
            store.put(
                keys.heartbeat_key(run.run_id),
                Heartbeat(time=now, attempt=run.attempt, step=run.step, total=5000)
                .model_dump_json()
                .encode(),
            )
        else:
            run.state = rng.choice([RunState.SUCCEEDED, RunState.FAILED, RunState.STOPPED])
            run.ended_at = now - rng.uniform(0, 3600)
            run.with_note(Reason.SUCCEEDED if run.state is RunState.SUCCEEDED else Reason.QUOTA)
        repo.create_run(run)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20, help="timed runs of each command")
    parser.add_argument("--n-runs", type=int, default=1000, help="runs in the store for ps")
    args = parser.parse_args()
    cli = relaunch_argv()
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(Path(tmp) / "store")
        populate(store, args.n_runs)
        env = {**os.environ, "RELAUNCH_STORE": store.url, "COLUMNS": "200"}
        result = {
            "benchmark": "cli_startup",
            "command": cli,
            "baseline_python_pass_s": time_command([sys.executable, "-c", "pass"], args.runs),
            "baseline_import_click_s": time_command(
                [sys.executable, "-c", "import click"], args.runs
            ),
            "help_s": time_command([*cli, "--help"], args.runs, env),
            "ps_s": time_command([*cli, "ps"], args.runs, env),
            "ps_json_s": time_command([*cli, "ps", "--json"], args.runs, env),
            "runs_in_store": args.n_runs,
        }
    result["targets"] = {"help_p50_s": 0.15, "ps_p50_s": 0.5}
    result["met"] = {
        "help": result["help_s"]["p50"] <= 0.15,  # type: ignore[index]
        "ps": result["ps_s"]["p50"] <= 0.5,
    }  # type: ignore[index]
    emit(result)


if __name__ == "__main__":
    main()
