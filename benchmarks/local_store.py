"""The local store's reads that an agent's tick makes of every run it owns: ``get`` of
1,000 heartbeats, ``stat`` of 1,000 stop markers, and the listing of ``live/`` (with
1,000 runs in it) that adoption and ``relaunch ps`` make.

    python benchmarks/local_store.py --runs 1000 [--baseline-src /path/to/other/src]

Baseline in the same run: the same files read with plain Python (``open(str).read()``
and ``os.stat``, no store); ``--baseline-src`` also times another relaunch's ``src/``
(e.g. main's, from ``git archive``) on the same files, in turn with this one. Each figure
is the best of ``--repeat`` passes (ms): the machine is shared, and the best pass is the
one least disturbed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import emit


def best_ms(work: Callable[[], object], repeat: int) -> float:
    work()
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 2)


def measure(root: str, runs: int, repeat: int) -> dict[str, float]:
    """The store's figures, in this interpreter (whatever relaunch it imports)."""
    from relaunch.runs import keys, live
    from relaunch.store import LocalStore

    store = LocalStore(root)
    rids = [f"f{i:05d}" for i in range(runs)]
    if store.stat(keys.live_key(rids[-1])) is None:
        for rid in rids:
            store.put(keys.run_key(rid), b"r" * 900)
            store.put(keys.live_key(rid), b"{}")
            store.put(keys.heartbeat_key(rid), b"h" * 200)
    hb = [keys.heartbeat_key(r) for r in rids]
    stops = [keys.stop_key(r) for r in rids]
    return {
        "get_heartbeats_ms": best_ms(lambda: [store.get(k) for k in hb], repeat),
        "stat_stop_markers_ms": best_ms(lambda: [store.stat(k) for k in stops], repeat),
        "scan_live_ms": best_ms(lambda: live.scan(store), repeat),
    }


def plain(root: str, runs: int, repeat: int) -> dict[str, float]:
    files = [f"{root}/live/f{i:05d}/heartbeat.json" for i in range(runs)]
    stops = [f"{root}/runs/f{i:05d}/.stop" for i in range(runs)]

    def read() -> None:
        for name in files:
            with open(name, "rb") as f:
                f.read()

    def stat() -> None:
        for name in stops:
            try:
                os.stat(name)
            except FileNotFoundError:
                pass

    return {
        "get_heartbeats_ms": best_ms(read, repeat),
        "stat_stop_markers_ms": best_ms(stat, repeat),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--rounds", type=int, default=3, help="with --baseline-src: turns each")
    p.add_argument("--baseline-src", help="another relaunch's src/ folder, timed in turn")
    p.add_argument("--child", help=argparse.SUPPRESS)  # a store folder: measure, print
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.runs, args.repeat)))
        return 0
    with tempfile.TemporaryDirectory(prefix="relaunch-localstore-") as root:
        this = measure(root, args.runs, args.repeat)
        out: dict[str, object] = {"benchmark": "local_store", "runs": args.runs}
        if args.baseline_src:
            argv = [sys.executable, __file__, "--runs", str(args.runs), "--child", root]
            argv += ["--repeat", str(args.repeat)]
            srcs = {"this": str(Path(__file__).parents[1] / "src"), "baseline": args.baseline_src}
            rounds: dict[str, list[dict[str, float]]] = {"this": [], "baseline": []}
            for _ in range(args.rounds):
                for name, src in srcs.items():
                    env = {**os.environ, "PYTHONPATH": src}
                    done = subprocess.run(argv, env=env, capture_output=True, check=True)
                    rounds[name].append(json.loads(done.stdout))
            this = {k: min(r[k] for r in rounds["this"]) for k in this}
            out["baseline_src"] = {k: min(r[k] for r in rounds["baseline"]) for k in this}
        out["this"] = this
        out["plain_python"] = plain(root, args.runs, args.repeat)
    emit(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
