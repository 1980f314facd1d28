"""The fleet benchmark's figures from what the fake cloud counted (``_fleet_gcs.py``):
check intervals, detection latency, Cloud Storage operations and their price."""

from __future__ import annotations

import itertools
import math
from typing import Any

from _common import summary

# Cloud Storage, Standard class, per 10,000 operations (Google's published prices).
PRICE = {"A": 0.05, "B": 0.004}
# Issue 14's figures for the code before this round, and its target: at most half.
TODAY_USD_PER_RUN_HOUR = 0.0071  # 4,320 class B + 1,080 class A
TODAY_USD_PER_AGENT_HOUR = 0.0063


def _summary(samples: list[float]) -> dict[str, float]:
    return summary(samples) if samples else {"n": 0, "p50": math.nan, "p95": math.nan}


def check_gaps(stats: dict[str, Any], run_ids: list[str]) -> dict[str, Any]:
    """Seconds between two checks of a run, over every run (pooled), and each run's
    longest unchecked stretch in the window (edges included). A run checked fewer than
    twice counts the whole window as its interval: ``censored`` (a lower bound). Pass
    only runs that stay live through the window (an ended run is checked no more)."""
    since, until = stats["since"], stats["until"]
    gaps: list[float] = []
    worst: list[float] = []
    censored = 0
    for rid in run_ids:
        times = sorted(stats["checks"].get(rid, []))
        if len(times) < 2:
            censored += 1
            gaps.append(until - since)
            worst.append(until - since)
            continue
        closed = [b - a for a, b in itertools.pairwise(times)]
        gaps += closed
        worst.append(max([times[0] - since, until - times[-1], *closed]))
    return {**_summary(gaps), "censored": censored, "worst_per_run_s": _summary(worst)}


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


def _usd(ops: dict[str, float]) -> float:
    return sum(ops[c] / 10_000 * PRICE[c] for c in PRICE)


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
        "ops_per_agent_hour": {c: round(v) for c, v in per_agent.items()},
        "usd_per_agent_hour": {
            "value": round(_usd(per_agent), 5),
            "today": TODAY_USD_PER_AGENT_HOUR,
            "met": _usd(per_agent) <= TODAY_USD_PER_AGENT_HOUR / 2,
        },
        "ops_per_run_hour": {
            "agent": {c: round(v) for c, v in agent.items()},
            "runtime": {c: round(v) for c, v in runtime.items()},
            "total": {c: round(v) for c, v in total.items()},
        },
        "usd_per_run_hour": {
            "agent": round(_usd(agent), 5),
            "runtime": round(_usd(runtime), 5),
            "total": round(_usd(total), 5),
            "today": TODAY_USD_PER_RUN_HOUR,
            "met": _usd(total) <= TODAY_USD_PER_RUN_HOUR / 2,
        },
    }
