"""`relaunch run --detach`: CPU seconds (user + sys) of the command, local and Vertex.

What a user feels when submitting: the process's own CPU and that of the children it
waits for (``os.wait4``), never an agent it leaves running. Measured in the same run:
`python -c pass` (the interpreter), `relaunch --help` (the CLI's floor: click and the
command registry) and `python -c "import click, yaml, pydantic; class M(BaseModel)…"`
(what validating a job with pydantic costs before relaunch does anything).

- local: examples/quickstart/job.yaml into a local store (no relaunch.toml);
- vertex: a Vertex AI job (a full image URI, so no build) into a gs:// store on the
  fake cloud (tests/fakegcp, loopback HTTP): the Vertex pre-queue checks and the
  google-cloud-storage writes, no network.

Bytecode is written and a warm-up round made first (what an installed relaunch has), so
PYTHONDONTWRITEBYTECODE is dropped from the commands' environment. The commands are run
in turn, round after round, so a load that comes and goes weighs on each alike.
``--baseline-src`` (another checkout's ``src``: ``git archive <commit> src | tar -x -C
/tmp/old``) adds both run cases with that code, as ``python -m relaunch.cli.main`` for
this code too. ``--instructions`` adds, once per command, the instructions it executes
(valgrind's callgrind; the same on a busy machine as on a quiet one).

    python benchmarks/submit_cpu.py [--runs 15] [--baseline-src /tmp/old/src] [--instructions]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(Path(__file__).parent)]

from _common import emit, relaunch_argv, summary  # noqa: E402
from tests.fakegcp.fake import FakeGCP  # noqa: E402

IMAGE = "us-central1-docker.pkg.dev/fake-project/repo/trainer:0123456789ab"
PYDANTIC_FLOOR = (
    "import click, yaml\nfrom pydantic import BaseModel\nclass M(BaseModel):\n    x: int\nM(x=1)\n"
)
VERTEX_JOB = f"""name: bench-vertex
backend: vertex
image: {IMAGE}
command: [python, train.py]
resources: {{machine_type: n1-standard-4, regions: [us-central1]}}
"""


Case = tuple[list[str], dict[str, str], Path]


def cpu_of(argv: Sequence[str], env: dict[str, str], cwd: Path) -> float:
    """User + sys CPU seconds of one run of ``argv`` and the children it waited for."""
    proc = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {err.decode(errors='replace')}")
    return usage.ru_utime + usage.ru_stime


def instructions_of(argv: Sequence[str], env: dict[str, str], cwd: Path) -> int:
    """Instructions one run of ``argv`` executes (its own process), by callgrind."""
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
        env=env, cwd=cwd, capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from valgrind: {out.stderr[-500:]}")
    return int(found.group(1))


def measure(cases: dict[str, Case], runs: int) -> dict[str, dict[str, float]]:
    """CPU seconds of each case, the cases run in turn ``runs`` times (after a warm-up)."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(runs + 1):
        for name, (argv, env, cwd) in cases.items():
            cpu = cpu_of(argv, env, cwd)
            if i:  # round 0 is the warm-up: bytecode written, files in the page cache
                samples[name].append(cpu)
    return {name: summary(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15, help="timed runs of each command")
    parser.add_argument("--baseline-src", type=Path, help="the src folder of code to compare")
    parser.add_argument("--instructions", action="store_true", help="count with valgrind too")
    args = parser.parse_args()
    cli = relaunch_argv()
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    base = {k: v for k, v in base.items() if not k.startswith("RELAUNCH_")}
    quickstart = str(ROOT / "examples" / "quickstart" / "job.yaml")
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp, FakeGCP(Path(tmp) / "fake") as fake:
        work = Path(tmp)
        local_env = {**base, "RELAUNCH_STORE": str(work / "local-store")}
        fake.gcs.create_bucket("runs")
        cloud = work / "cloud"
        cloud.mkdir()
        (cloud / "relaunch.toml").write_text(
            f'[store]\nurl = "gs://runs/relaunch"\n[gcp]\nproject = "{fake.project}"\n'
            'region = "us-central1"\n'
        )
        (cloud / "job.yaml").write_text(VERTEX_JOB)
        cloud_env = {**base, **fake.env()}
        run = [*cli, "run", "--detach"]
        cases: dict[str, Case] = {
            "baseline_python_pass": ([python, "-c", "pass"], base, work),
            "help": ([*cli, "--help"], base, work),
            "baseline_click_yaml_pydantic_model": ([python, "-c", PYDANTIC_FLOOR], base, work),
            "run_detach_local": ([*run, quickstart], local_env, work),
            "run_detach_vertex_fake_cloud": ([*run, "job.yaml"], cloud_env, cloud),
        }
        if args.baseline_src:
            module = [python, "-m", "relaunch.cli.main", "run", "--detach"]
            for name, src in (("this", ROOT / "src"), ("baseline", args.baseline_src)):
                path = {"PYTHONPATH": str(src.resolve())}
                cases[f"python_m_{name}_local"] = (
                    [*module, quickstart],
                    {**local_env, **path},
                    work,
                )
                cases[f"python_m_{name}_vertex"] = (
                    [*module, "job.yaml"],
                    {**cloud_env, **path},
                    cloud,
                )
        result: dict[str, Any] = {
            "benchmark": "submit_cpu",
            "command": cli,
            "unit": "CPU seconds (user + sys) of the command and the children it waited for",
            **measure(cases, args.runs),
        }
        if args.instructions and shutil.which("valgrind"):
            result["instructions"] = {
                name: instructions_of(*case)
                for name, case in cases.items()
                if "vertex" not in name  # the fake cloud answers too slowly under valgrind
            }
    help_p50 = result["help"]["p50"]
    for case in ("run_detach_local", "run_detach_vertex_fake_cloud"):
        result[f"{case}_over_help"] = round(result[case]["p50"] / help_p50, 2)
    if "instructions" in result:
        counts = result["instructions"]
        result["instructions_local_over_help"] = round(
            counts["run_detach_local"] / counts["help"], 2
        )
    result["target"] = "run --detach (local) at most 2 times --help"
    result["met"] = result["run_detach_local_over_help"] <= 2.0
    emit(result)


if __name__ == "__main__":
    main()
