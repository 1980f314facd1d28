"""Shared bits of the benchmark scripts (each prints one JSON document)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def relaunch_argv() -> list[str]:
    """The `relaunch` console script next to this interpreter when it is a real Python
    script (a venv); else `python -m relaunch.cli.main` (e.g. behind a pyenv shim)."""
    script = Path(sys.executable).parent / "relaunch"
    if (
        script.exists()
        and script.read_bytes()[:2] == b"#!"
        and b"python" in script.read_bytes()[:200]
    ):
        return [str(script)]
    return [sys.executable, "-m", "relaunch.cli.main"]


def time_command(
    argv: Sequence[str], runs: int, env: dict[str, str] | None = None
) -> dict[str, float]:
    """Wall time of a command over ``runs`` runs (after one warm-up)."""
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
        )
        samples.append(time.perf_counter() - start)
    return summary(samples)


def summary(samples: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 4),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 4),
        "min": round(ordered[0], 4),
        "max": round(ordered[-1], 4),
    }


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "executable": sys.executable,
    }


def emit(result: dict[str, Any]) -> None:
    print(json.dumps({**result, "machine": machine()}, indent=2))
