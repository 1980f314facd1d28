"""An in-process agent whose ticks are timed, and — on request — profiled: ticks taken
over by the main thread, sampled (``_sampler.py``: where the wall time goes) and then
run under cProfile (calls per tick)."""

from __future__ import annotations

import cProfile
import io
import pstats
import threading
import time
from typing import Any

from _common import summary
from _sampler import Sampler

from relaunch.agent.loop import Agent


class Timed:
    """Runs an agent's loop in a thread, timing each tick (wall, thread CPU)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.walls: list[float] = []
        self.cpus: list[float] = []
        self.recording = False
        self.raw_tick = agent.tick
        self._hold = threading.Event()  # the loop's thread waits; the main thread ticks
        self._held = threading.Event()
        self._resume = threading.Event()

        def timed() -> None:
            if self._hold.is_set():
                self._held.set()
                self._resume.wait()
                return
            wall, cpu = time.perf_counter(), time.thread_time()
            self.raw_tick()
            if self.recording:
                self.walls.append(time.perf_counter() - wall)
                self.cpus.append(time.thread_time() - cpu)

        agent.tick = timed
        self.thread = threading.Thread(target=agent.run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, wait: float = 30.0) -> None:
        self.agent.stopping.set()
        self._resume.set()
        self.thread.join(timeout=wait)

    def profile(self, ticks: int, top: int = 60) -> dict[str, Any]:
        """``ticks`` ticks sampled, then as many under cProfile, in the main thread while
        the loop's thread waits (the same ticks, at the agent's poll interval)."""
        self._hold.set()
        self._held.wait()
        walls: list[float] = []
        try:
            with Sampler() as sampler:
                for _ in range(ticks):
                    started = time.perf_counter()
                    sampler.active = True
                    self.raw_tick()
                    sampler.active = False
                    walls.append(time.perf_counter() - started)
                    time.sleep(max(0.0, self.agent.poll - walls[-1]))
            profiler = cProfile.Profile()
            for _ in range(ticks):
                started = time.perf_counter()
                profiler.runcall(self.raw_tick)
                time.sleep(max(0.0, self.agent.poll - (time.perf_counter() - started)))
        finally:
            self._hold.clear()
            self._resume.set()
        sampled = sampler.report(sum(walls), ticks, top)
        return {
            "sampled": {**sampled, "tick_wall_s": summary(walls)},
            "cprofile": cprofile_table(profiler, ticks, top),
        }


def cprofile_table(profiler: cProfile.Profile, ticks: int, top: int = 25) -> dict[str, Any]:
    """Calls per tick, and time under cProfile (which slows small Python calls far more
    than calls into C: read the sampled shares for where the time goes)."""
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = stats.stats  # type: ignore[attr-defined]

    def name(func: tuple[str, int, str]) -> str:
        path, line, fn = func
        short = path.split("/site-packages/")[-1].split("/src/")[-1]
        return f"{short}:{line}({fn})"

    def table(column: int) -> list[dict[str, Any]]:
        ranked = sorted(rows.items(), key=lambda kv: kv[1][column], reverse=True)[:top]
        return [
            {
                "function": name(func),
                "calls_per_tick": round(row[1] / ticks, 1),
                "own_ms_per_tick": round(row[2] / ticks * 1000, 2),
                "cumulative_ms_per_tick": round(row[3] / ticks * 1000, 2),
            }
            for func, row in ranked
        ]

    return {"ticks": ticks, "by_own_time": table(2), "by_cumulative_time": table(3)}
