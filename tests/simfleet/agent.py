"""`relaunch agent` with the simulated backend registered (tests and benchmarks only):

    RELAUNCH_SIM_DIR=… python -m tests.simfleet.agent agent --store URL [OPTIONS]

Everything after the module name is the `relaunch` command line. With
``RELAUNCH_SIM_TICKS=FILE`` each tick appends a line to FILE: when it started (unix
time), its wall time and the process's CPU time over it (the agent's pool included), in
seconds.
"""

from __future__ import annotations

import os
import sys
import time

from relaunch.cli.main import main
from tests.simfleet.backend import register


def time_ticks(path: str) -> None:
    """Every agent tick of this process timed into ``path``, a line each."""
    from relaunch.agent.loop import Agent

    raw = Agent.tick
    out = open(path, "a", buffering=1)  # noqa: SIM115 - open for the process's life

    def tick(self: Agent) -> None:
        started, wall, cpu = time.time(), time.perf_counter(), time.process_time()
        try:
            raw(self)
        finally:
            spent = time.perf_counter() - wall
            out.write(f"{started:.3f} {spent:.4f} {time.process_time() - cpu:.4f}\n")

    Agent.tick = tick  # type: ignore[method-assign]


if __name__ == "__main__":
    register()
    if os.environ.get("RELAUNCH_SIM_TICKS"):
        time_ticks(os.environ["RELAUNCH_SIM_TICKS"])
    sys.exit(main(sys.argv[1:]))
