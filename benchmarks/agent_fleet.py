"""Agents owning thousands of runs: tick time and CPU on a local store; on a gs:// store
with latency added to every request, how often each run is checked, how fast an ended
attempt is noticed, how several agents split the runs, and what Cloud Storage bills.

    python benchmarks/agent_fleet.py --store local --runs 1000 --ticks 40
    python benchmarks/agent_fleet.py --store gs --runs 2000 --latency-ms 20
    python benchmarks/agent_fleet.py --store gs --runs 2000 --agents 3 --latency-ms 20
    python benchmarks/agent_fleet.py --store gs --runs 0 --idle 720 --idle-warmup 30
    python benchmarks/agent_fleet.py --store local --runs 1000 --ticks 60 --profile 30

Attempts are simulated (``tests/simfleet``: thousands of real runtimes do not fit on a
small machine); the agents are real ``Agent`` objects — in this process when there is
one (so its ticks are timed), else `relaunch agent` processes
(``tests.simfleet.agent``). One simulator process (``tests.simfleet.simulator``) acts as
every attempt's runtime through the store API and the runtime's own fencing code: a
fence check and a heartbeat every 10 s, the result and the ``exited`` heartbeat when the
benchmark ends an attempt. The gs:// store is the fake cloud's, in its own process
(``_fleet_gcs.py``), which counts every request by client and Cloud Storage class. Runs
are queued and claimed the real way with no added latency (``--ramp-latency-ms``); the
latency is on for the measured window.

``--runs 0``: the idle agents alone (an agent's cost per hour with no run, by kind of
request, after ``--idle-warmup`` seconds of start-up). ``--profile N`` (local): after the
timed ticks, N ticks sampled (where the wall time goes) and N under cProfile (calls).

Baselines in the same run: reading what a tick needs of every run with plain ``open()``
(local); the issue's figures for today's cost, and its targets, for the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))

from _common import emit, summary
from _fleet_report import check_gaps, costs, detection, idle_costs, per_agent
from _gcs_ops import plain_read
from _timed import Timed
from tests.simfleet.backend import register, seed
from tests.simfleet.rawgcs import RawGCS

from relaunch.agent.loop import Agent, AgentOptions
from relaunch.runs import keys
from relaunch.runs.records import AttemptRecord, RunRecord
from relaunch.store import LocalStore, open_store
from relaunch.store.base import ObjectStore

HERE = Path(__file__).parent
ROOT = HERE.parent
BUCKET = "fleet"


def running(store: ObjectStore, run_ids: list[str]) -> int:
    count = 0
    for rid in run_ids:
        try:
            count += RunRecord.model_validate_json(store.get(keys.run_key(rid))[0]).state.value in (
                "RUNNING",
                "SUCCEEDED",
            )
        except Exception:
            pass
    return count


def wait_running(store: ObjectStore, run_ids: list[str], timeout: float) -> tuple[int, float]:
    """Wait until every run is RUNNING (or over); returns (how many, seconds waited)."""
    started = time.monotonic()
    while True:
        count = running(store, run_ids)
        waited = time.monotonic() - started
        if count == len(run_ids) or waited > timeout:
            return count, waited
        time.sleep(5.0)


def start_sim(args: argparse.Namespace, tmp: Path, url: str, endpoint: str | None) -> Any:
    argv = [sys.executable, "-m", "tests.simfleet.simulator", "--dir", str(tmp / "sim")]
    argv += ["--store", url, "--interval", str(args.hb_interval), "--plan", str(tmp / "plan.json")]
    argv += ["--stats", str(tmp / "sim-stats.json"), "--workers", str(args.sim_workers)]
    if endpoint:
        argv += ["--endpoint", endpoint]
    return subprocess.Popen(argv, cwd=ROOT, stderr=open(tmp / "sim.log", "wb"))


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- local store: one agent, ticks timed -----------------------------------------------


def local_case(args: argparse.Namespace, tmp: Path, rids: list[str]) -> dict[str, Any]:
    os.environ["RELAUNCH_SIM_POLL_INTERVAL"] = "0.2"  # the local backend's
    store = LocalStore(tmp / "store")
    seed(store, rids, args.hb_interval, workers=4)
    sim = start_sim(args, tmp, store.url, None)
    agent = Agent(store, AgentOptions(max_jobs=args.runs, poll=0.25), log=lambda _m: None)
    timed = Timed(agent)
    try:
        timed.start()
        count, ramp = wait_running(store, rids, args.ramp_timeout)
        timed.recording = True
        while len(timed.walls) < args.ticks and timed.thread.is_alive():
            time.sleep(0.25)
        timed.recording = False
        profiled = {"profile": timed.profile(args.profile)} if args.profile else {}
    finally:
        timed.stop()
        stop(sim)
    # The floor once the agent is stopped: read beside its ticks, it measured them.
    floor = [plain_read(tmp / "store", rids) for _ in range(5)]
    cpu_per_run = summary(timed.cpus)["p50"] / args.runs
    walls = summary(timed.walls)
    return {
        "runs_running": count,
        "ramp_s": round(ramp, 1),
        "tick_wall_s": walls,
        "tick_cpu_s": summary(timed.cpus),
        "agent_cpu_ms_per_run_per_tick": round(cpu_per_run * 1000, 3),
        "baseline_plain_read_s": summary(floor)["p50"],
        "tick_cpu_vs_plain_read": round(summary(timed.cpus)["p50"] / summary(floor)["p50"], 2),
        "simulator": json.loads((tmp / "sim-stats.json").read_text()),
        "met": {
            "tick_p95_le_0.25s": walls["p95"] <= 0.25,
            "cpu_le_1ms_per_run_tick": cpu_per_run <= 0.001,
        },
        **profiled,
    }


# -- gs:// store: the fake cloud in its own process ---------------------------------------


class Cloud:
    def __init__(self, tmp: Path, agents: int) -> None:
        names = [f"agent{i}" for i in range(agents)] + ["runtime"]
        argv = [sys.executable, str(HERE / "_fleet_gcs.py"), "--bucket", BUCKET]
        self.proc = subprocess.Popen(
            [*argv, "--endpoints", ",".join(names)],
            stdout=subprocess.PIPE,
            stderr=open(tmp / "gcs.log", "wb"),  # noqa: SIM115
        )
        assert self.proc.stdout is not None
        self.urls: dict[str, str] = json.loads(self.proc.stdout.readline())

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.urls["main"] + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=300) as resp:
            return json.loads(resp.read() or b"{}")

    def latency(self, ms: float) -> None:
        self.call("POST", f"/bench/latency?ms={ms}")


def agent_env(cloud: Cloud, i: int) -> dict[str, str]:
    return {
        **os.environ,
        "RELAUNCH_STORAGE_ENDPOINT": cloud.urls[f"agent{i}"],
        "GOOGLE_CLOUD_PROJECT": "fleet",
    }


def agent_ticks(
    tmp: Path, agents: int, timed: Timed | None, since: float, until: float
) -> dict[str, list[tuple[float, float]]]:
    """Each agent's ticks in the window by endpoint, ``(wall, cpu)`` in seconds: the
    in-process agent's (recorded in the window only), or the ticks each agent process
    wrote (``RELAUNCH_SIM_TICKS``) that started in the window."""
    if timed is not None:
        return {"agent0": list(zip(timed.walls, timed.cpus, strict=True))}
    out: dict[str, list[tuple[float, float]]] = {}
    for i in range(agents):
        path = tmp / f"agent{i}.ticks"
        rows = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
        out[f"agent{i}"] = [
            (float(wall), float(cpu)) for t, wall, cpu in rows if since <= float(t) <= until
        ]
    return out


def gs_case(args: argparse.Namespace, tmp: Path, rids: list[str]) -> dict[str, Any]:
    os.environ["RELAUNCH_SIM_POLL_INTERVAL"] = "10"  # as the Vertex and GCE backends poll
    url = f"gs://{BUCKET}/store"
    cloud = Cloud(tmp, args.agents)
    bench = RawGCS(url, cloud.urls["main"])
    procs: list[subprocess.Popen[bytes]] = []
    timed: Timed | None = None
    sim = None
    try:
        # 1. Idle agents: what an agent costs by the hour with no run.
        cloud.latency(args.latency_ms)
        if args.agents == 1:
            os.environ.update(agent_env(cloud, 0))
            store = open_store(url, call_timeout=30 / 4)
            agent = Agent(store, AgentOptions(max_jobs=args.max_jobs), log=lambda _m: None)
            timed = Timed(agent)
            timed.start()
        else:
            for i in range(args.agents):
                argv = [sys.executable, "-m", "tests.simfleet.agent", "agent", "--store", url]
                log = open(tmp / f"agent{i}.log", "wb")  # noqa: SIM115
                argv += ["--max-jobs", str(args.max_jobs)]
                env = {**agent_env(cloud, i), "RELAUNCH_SIM_TICKS": str(tmp / f"agent{i}.ticks")}
                procs.append(subprocess.Popen(argv, cwd=ROOT, env=env, stderr=log))
        deadline = time.monotonic() + 120
        while len(bench.list("agents/").objects) < args.agents:  # each one is up
            assert time.monotonic() < deadline, "the agents did not start"
            time.sleep(0.5)
        time.sleep(args.idle_warmup)  # start-up (the first listings) is not idling
        cloud.call("POST", "/bench/window")
        time.sleep(args.idle)
        idle = cloud.call("GET", "/bench/stats")
        if not rids:  # --runs 0: the idle agents alone
            priced = idle_costs(idle, args.agents)
            met = {"usd_per_agent_hour_le_half_today": priced["usd_per_agent_hour"]["met"]}
            return {"latency_ms": args.latency_ms, **priced, "met": met}
        # 2. Queue the runs, start their simulated runtimes, let the agents claim them.
        cloud.latency(args.ramp_latency_ms)
        names = {f"store/{keys.heartbeat_key(rid)}": rid for rid in rids}
        cloud.call("POST", "/bench/watch", {"names": names})
        seed(bench, rids, args.hb_interval, workers=8)  # type: ignore[arg-type]
        sim = start_sim(args, tmp, url, cloud.urls["runtime"])
        count, ramp = wait_running(bench, rids, args.ramp_timeout)  # type: ignore[arg-type]
        # 3. The window: latency on, some attempts ended at known times.
        cloud.latency(args.latency_ms)
        window_start = time.time()
        ended = random.Random(1).sample(rids, min(args.ends, len(rids)))
        plan = {
            rid: window_start + args.window * (0.2 + 0.5 * i / max(1, len(ended)))
            for i, rid in enumerate(ended)
        }
        (tmp / "plan.json").write_text(json.dumps(plan))
        cloud.call("POST", "/bench/window")
        if timed is not None:
            timed.recording = True
        time.sleep(args.window)
        if timed is not None:
            timed.recording = False
        stats = cloud.call("GET", "/bench/stats")
        split = owners(bench, args.agents, timed)
        found = ended_attempts(bench, tmp / "sim", ended, args.tail)
    finally:
        if timed is not None:
            timed.stop(wait=5.0)
        for proc in procs:
            stop(proc)
        stop(sim)
        stop(cloud.proc)
    out: dict[str, Any] = {
        "latency_ms": args.latency_ms,
        "runs_running": count,
        "ramp_s": round(ramp, 1),
        "window_s": round(stats["until"] - stats["since"], 1),
        "runs_per_agent": split,
    }
    ticks = agent_ticks(tmp, args.agents, timed, stats["since"], stats["until"])
    live = sorted(set(rids) - set(ended))
    walls = [wall for each in ticks.values() for wall, _ in each]  # every agent's, pooled
    out["tick_wall_s"] = summary(walls or [float("nan")])
    gaps = check_gaps(stats, live)
    detected = detection(found)
    out["check_interval_s"] = gaps
    # Receipts of a run's heartbeat by any agent (each agent's listing carries all):
    # the same as the owner's with one agent; with several, not the owner's cadence.
    out["check_interval_any_agent_s"] = check_gaps(stats, live, "checks_any")
    out["per_agent"] = per_agent(stats, live, ticks)
    out["detection_s"] = detected
    out.update(costs(stats, idle, args.agents, len(rids)))
    out["simulator"] = json.loads((tmp / "sim-stats.json").read_text())
    # An agent that falls behind reads less often, so it costs less: a price counts
    # only at the detection target.
    cadence = gaps["p95"] <= 5.0 and gaps["censored"] == 0
    out["met"] = {
        "check_interval_p95_le_5s": cadence,
        "usd_per_run_hour_le_half_today_at_5s": cadence and out["usd_per_run_hour"]["met"],
        "usd_per_agent_hour_le_half_today": out["usd_per_agent_hour"]["met"],
    }
    return out


def owners(bench: ObjectStore, agents: int, timed: Timed | None) -> list[int]:
    """How many runs each agent owns now (from the agents' own records)."""
    if timed is not None:
        return [len(timed.agent.owned)]
    counts = []
    for meta in bench.list("agents/").objects:
        counts.append(len(json.loads(bench.get(meta.key)[0]).get("runs", [])))
    return sorted(counts, reverse=True)


def ended_attempts(
    bench: ObjectStore, sim: Path, run_ids: list[str], tail: float
) -> list[tuple[float, float | None]]:
    """(ended at, recorded ended at) per run the simulator ended; None: not yet recorded
    when the tail ran out."""
    deadline = time.monotonic() + tail
    out: dict[str, tuple[float, float | None]] = {}
    while True:
        for rid in run_ids:
            if rid in out and out[rid][1] is not None:
                continue
            ends = list(sim.glob(f"{rid}.*.json.ended"))
            if not ends:
                continue
            t = json.loads(ends[0].read_text())["t"]
            n = int(ends[0].name.split(".")[1])
            try:
                attempt = AttemptRecord.model_validate_json(bench.get(keys.attempt_key(rid, n))[0])
            except Exception:
                attempt = None
            seen = attempt.ended_at if attempt is not None and attempt.ended_at else None
            out[rid] = (t, seen)
        pending = [rid for rid in run_ids if rid not in out or out[rid][1] is None]
        if not pending or time.monotonic() > deadline:
            return list(out.values())
        time.sleep(5.0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", choices=["local", "gs"], default="local")
    p.add_argument("--runs", type=int, default=1000, help="gs: 0 measures idle agents only")
    p.add_argument("--agents", type=int, default=1)
    p.add_argument("--latency-ms", type=float, default=20.0, help="gs: added to each request")
    p.add_argument("--ramp-latency-ms", type=float, default=0.0, help="gs: while claiming")
    p.add_argument("--ticks", type=int, default=40, help="local: ticks timed")
    p.add_argument(
        "--profile", type=int, default=0, help="local: then N ticks sampled and N under cProfile"
    )
    p.add_argument("--window", type=float, default=180.0, help="gs: seconds measured")
    p.add_argument("--idle", type=float, default=40.0, help="gs: seconds of idle agents")
    p.add_argument(
        "--idle-warmup", type=float, default=15.0, help="gs: seconds after start not counted"
    )
    p.add_argument("--tail", type=float, default=120.0, help="gs: wait for late detections")
    p.add_argument("--ends", type=int, help="gs: attempts ended in the window (runs/20)")
    p.add_argument("--max-jobs", type=int, help="per agent (default: --runs)")
    p.add_argument("--hb-interval", type=float, default=10.0)
    p.add_argument("--sim-workers", type=int, default=32)
    p.add_argument("--ramp-timeout", type=float, default=600.0)
    args = p.parse_args()
    args.ends = args.runs // 20 if args.ends is None else args.ends
    args.max_jobs = args.max_jobs or args.runs or 4  # 4: an agent's default
    if args.store == "local" and args.agents != 1:
        p.error("--store local measures one in-process agent (--agents 1)")
    if args.store == "local" and args.runs < 1:
        p.error("--store local measures an agent's ticks over runs (--runs 1 or more)")
    register()
    rids = [f"f{i:05d}" for i in range(args.runs)]
    with tempfile.TemporaryDirectory(prefix="relaunch-fleet-") as name:
        tmp = Path(name)
        (tmp / "sim").mkdir()
        os.environ["RELAUNCH_SIM_DIR"] = str(tmp / "sim")
        case = local_case if args.store == "local" else gs_case
        result = case(args, tmp, rids)
    emit({"benchmark": "agent_fleet", "store": args.store, "runs": args.runs,
          "agents": args.agents, **result})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
