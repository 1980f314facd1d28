"""How long relaunch takes to refuse inputs that used to hang it: a YAML "billion laughs"
(nested aliases), a job file that is /dev/zero, a 2 MiB job file, and a YAML document
nested too deeply — against validating the quickstart's valid job in the same run
(the baseline). Target: every refusal p50 ≤ 0.1 s.

    python benchmarks/bad_input.py [--runs 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import emit, summary

from relaunch.errors import RelaunchError
from relaunch.spec.loader import load_job

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.1


def laughs(levels: int) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "name: x\ncommand: [x]\n" + "\n".join(lines) + "\n"


def timed(call: Callable[[], object], runs: int, refused: bool) -> dict[str, float]:
    samples = []
    for _ in range(runs + 1):  # the first is a warm-up
        start = time.perf_counter()
        try:
            call()
            ok = True
        except RelaunchError:
            ok = False
        samples.append(time.perf_counter() - start)
        if ok == refused:
            raise SystemExit(f"expected {'a refusal' if refused else 'success'}")
    return summary(samples[1:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "laughs.yaml").write_text(laughs(9))  # 10^9 values when expanded
        (folder / "big.yaml").write_text("name: x\ncommand: [x]\n# " + "x" * (2 << 20) + "\n")
        (folder / "deep.yaml").write_text("name: x\ncommand: [x]\nd: " + "[" * 50_000 + "\n")
        (folder / "zero.yaml").symlink_to("/dev/zero")
        baseline = timed(lambda: load_job(ROOT / "examples/quickstart/job.yaml"), args.runs, False)
        cases = {
            name: timed(lambda f=folder / f"{name}.yaml": load_job(f), args.runs, True)
            for name in ("laughs", "zero", "big", "deep")
        }
    emit(
        {
            "benchmark": "bad_input",
            "baseline_valid_job": baseline,
            "refusals": cases,
            "target_p50_s": TARGET,
            "met": all(c["p50"] <= TARGET for c in cases.values()),
        }
    )


if __name__ == "__main__":
    main()
