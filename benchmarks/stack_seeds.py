"""The seeds' stack on a real engine: warm `images plan` vs `git status`, and a build
with nothing to do.

Copies `examples/seeds-stack` (four busybox images, a build secret) into a temp folder,
commits it to git, starts its own dockerd and registry on 127.0.0.1 (the test suite's
harness, `tests/images/engine.py`: root and Debian's docker.io, docker-registry and
busybox-static needed), builds and pushes the stack once, then times, in the same run:

- `git status --porcelain` on the project (the baseline);
- the warm plan in-process (`plan_images`: tags of the four images from the stat cache,
  and the real registry asked over plain http for each tag), and offline;
- the CLI, start-up included: `relaunch images plan` and
  `relaunch images build --push --builder docker` with nothing to do.

    sudo python benchmarks/stack_seeds.py --runs 15

Prints one JSON object. Target: warm plan <= 1.0x `git status`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
sys.path[:0] = [str(SRC), str(REPO)]

from tests.images.busybox_stack import make_busybox_stack  # noqa: E402
from tests.images.engine import running_engine, running_registry, skip_reason  # noqa: E402

from relaunch.images.build import plan_images  # noqa: E402
from relaunch.spec.loader import load_project  # noqa: E402


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=b", "-c", "user.email=b@b.invalid", *args],
        check=True,
        capture_output=True,
    )


def med(xs: list[float]) -> float:
    return round(statistics.median(xs), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15, help="repetitions of each timing")
    a = ap.parse_args()
    reason = skip_reason()
    if reason is not None:
        sys.exit(f"cannot run: {reason}")
    base = Path(tempfile.mkdtemp(prefix="relaunch-bench-seeds-"))
    try:
        result = measure(base, a.runs)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(result, indent=2))


def measure(base: Path, runs: int) -> dict[str, object]:
    with running_engine(base / "dockerd") as engine, running_registry(base / "reg") as reg:
        root = make_busybox_stack(base / "proj", reg.repository("bench"))
        git(root, "init", "-q")
        git(root, "add", "-A")
        git(root, "commit", "-qm", "bench")
        env = {
            **os.environ,
            "PYTHONPATH": str(SRC),
            "DOCKER_HOST": engine.host,
            "RELAUNCH_DOCKER": engine.cli,
            "HF_TOKEN": "bench-token",
        }
        cli = [sys.executable, "-m", "relaunch.cli.main", "images"]

        def run(*args: str) -> None:
            subprocess.run([*cli, *args], cwd=root, env=env, check=True, capture_output=True)

        t = time.perf_counter()
        run("build", "--push", "--builder", "docker")
        first_build_s = time.perf_counter() - t
        config = load_project(root / "relaunch.toml")

        def plan() -> None:
            items = plan_images(config).items
            assert all(not it.needs_build for it in items), "the stack is up to date"

        def plan_offline() -> None:
            plan_images(config, offline=True)

        def git_status() -> None:
            subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain"], check=True, capture_output=True
            )

        plan()  # warm the stat cache
        # interleaved, so load on the shared machine hits both alike
        warm: list[float] = []
        offline: list[float] = []
        gits: list[float] = []
        for _ in range(runs):
            gits += timed(git_status, 1)
            warm += timed(plan, 1)
            offline += timed(plan_offline, 1)
        cli_plan = timed(lambda: run("plan"), max(3, runs // 3))
        noop_build = timed(lambda: run("build", "--push", "--builder", "docker"), max(3, runs // 3))
    return {
        "images": 4,
        "first_build_and_push_s": round(first_build_s, 2),
        "git_status_s_median": med(gits),
        "warm_plan_s_median": med(warm),
        "warm_plan_offline_s_median": med(offline),
        "ratio_warm_over_git_status": round(med(warm) / med(gits), 3),
        "ratio_offline_over_git_status": round(med(offline) / med(gits), 3),
        "cli_plan_s_median": med(cli_plan),
        "cli_noop_build_push_s_median": med(noop_build),
        "samples": {"git_status": gits, "warm_plan": warm, "noop_build": noop_build},
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


if __name__ == "__main__":
    main()
