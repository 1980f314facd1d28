"""The fleet benchmark's figures from what the fake cloud counted (``_fleet_gcs.py``):
check intervals, detection latency, Cloud Storage operations and their price."""

from __future__ import annotations

import itertools
import math
from typing import Any

from _common import summary
from _gcs_ops import PRICE, usd

# Issue 14's figures for the code before this round, and its target: at most half.
TODAY_USD_PER_RUN_HOUR = 0.0071  # 4,320 class B + 1,080 class A
TODAY_USD_PER_AGENT_HOUR = 0.0063


def _summary(samples: list[float]) -> dict[str, float]:
    return summary(samples) if samples else {"n": 0, "p50": math.nan, "p95": math.nan}


def check_gaps(stats: dict[str, Any], run_ids: list[str], checks: str = "checks") -> dict[str, Any]:
    """Seconds between two checks of a run, over every run (pooled), and each run's
    longest unchecked stretch in the window (edges included). A run checked fewer than
    twice counts the whole window as its interval: ``censored`` (a lower bound). Pass
    only runs that stay live through the window (an ended run is checked no more).
    ``checks``: ``"checks"``, by the run's owner; ``"checks_any"``, by any agent."""
    since, until = stats["since"], stats["until"]
    gaps: list[float] = []
    worst: list[float] = []
    censored = 0
    for rid in run_ids:
        times = sorted(stats[checks].get(rid, []))
        if len(times) < 2:
            censored += 1
            gaps.append(until - since)
            worst.append(until - since)
            continue
        closed = [b - a for a, b in itertools.pairwise(times)]
        gaps += closed
        worst.append(max([times[0] - since, until - times[-1], *closed]))
    return {**_summary(gaps), "censored": censored, "worst_per_run_s": _summary(worst)}


def per_agent(
    stats: dict[str, Any], run_ids: list[str], ticks: dict[str, list[tuple[float, float]]]
) -> dict[str, Any]:
    """Each agent's share, by its endpoint: the runs it owns at the window's end, its
    ticks in the window (``(wall, cpu)`` seconds) and its runs' check intervals (of
    ``run_ids``, the runs live through the window)."""
    owners: dict[str, str | None] = stats.get("owners", {})
    out: dict[str, Any] = {}
    for via in sorted(set(ticks) | {v for v in owners.values() if v is not None}):
        mine = [rid for rid in run_ids if owners.get(rid) == via]
        timed = ticks.get(via, [])
        out[via] = {
            "runs_owned": sum(1 for v in owners.values() if v == via),
            "tick_wall_s": _summary([w for w, _ in timed]),
            "tick_cpu_s": _summary([c for _, c in timed]),
            "check_interval_s": check_gaps(stats, mine),
        }
    out["none"] = {"runs_owned": sum(1 for v in owners.values() if v is None)}
    return out


def detection(found: list[tuple[float, float | None]]) -> dict[str, Any]:
    """Seconds from an attempt's end to the agent recording it ended."""
    seen = [max(0.0, recorded - ended) for ended, recorded in found if recorded is not None]
    return {**_summary(seen), "ended": len(found), "not_recorded": len(found) - len(seen)}


def _ops(counts: dict[str, int], who: str) -> dict[str, int]:
    out = {"A": 0, "B": 0}
    for key, n in counts.items():
        via, _, cls = key.partition(":")
        if via.startswith(who) and cls in out:
            out[cls] += n
    return out


def idle_costs(idle: dict[str, Any], agents: int) -> dict[str, Any]:
    """Operations and dollars per agent-hour of agents idle on an empty store, by class
    and by kind (operation and key family), most costly kind first."""
    idle_s = idle["until"] - idle["since"]
    per_agent = {c: n / agents / idle_s * 3600 for c, n in _ops(idle["ops"], "agent").items()}
    kinds: dict[str, float] = {}
    for key, n in idle.get("kinds", {}).items():
        via, _, kind = key.partition(":")
        if via.startswith("agent"):
            kinds[kind] = kinds.get(kind, 0.0) + n / agents / idle_s * 3600
    priced = sorted(kinds.items(), key=lambda kv: -usd({kv[0].split(" ")[0]: kv[1]}))
    return {
        "idle_window_s": round(idle_s, 1),
        "ops_per_agent_hour": {c: round(v) for c, v in per_agent.items()},
        "ops_per_agent_hour_by_kind": {
            k: {"ops": round(v), "usd": round(usd({k.split(" ")[0]: v}), 5)} for k, v in priced
        },
        "usd_per_agent_hour": {
            "value": round(usd(per_agent), 5),
            "today": TODAY_USD_PER_AGENT_HOUR,
            "met": usd(per_agent) <= TODAY_USD_PER_AGENT_HOUR / 2,
        },
    }


def costs(stats: dict[str, Any], idle: dict[str, Any], agents: int, runs: int) -> dict[str, Any]:
    """Operations and dollars per agent-hour (idle agents) and per run-hour (the window,
    less what the agents cost idle), agent side and runtime side."""
    idle_s = idle["until"] - idle["since"]
    window_s = stats["until"] - stats["since"]
    per_agent = {c: n / agents / idle_s * 3600 for c, n in _ops(idle["ops"], "agent").items()}
    agent = {
        c: max(0.0, n - per_agent[c] * agents * window_s / 3600) / runs / window_s * 3600
        for c, n in _ops(stats["ops"], "agent").items()
    }
    runtime = {c: n / runs / window_s * 3600 for c, n in _ops(stats["ops"], "runtime").items()}
    total = {c: agent[c] + runtime[c] for c in PRICE}
    return {
        **idle_costs(idle, agents),
        "ops_per_run_hour": {
            "agent": {c: round(v) for c, v in agent.items()},
            "runtime": {c: round(v) for c, v in runtime.items()},
            "total": {c: round(v) for c, v in total.items()},
        },
        "usd_per_run_hour": {
            "agent": round(usd(agent), 5),
            "runtime": round(usd(runtime), 5),
            "total": round(usd(total), 5),
            "today": TODAY_USD_PER_RUN_HOUR,
            "met": usd(total) <= TODAY_USD_PER_RUN_HOUR / 2,
        },
    }
