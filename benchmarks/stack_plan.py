"""How fast is `relaunch images plan` on a big build context?

Generates a tree of N files (default 50,000, ~1 GB) in a temp folder, commits it to git,
then times the tag computation (the library call behind `relaunch images plan`):
cold (no stat cache; the page cache is warm because the files were just written) and
warm (stat cache present), and `git status` on the same tree, in the same run — first
right after writing, then once the tree has settled (sync, then --settle seconds: the
kernel's writeback of 1 GB holds a core for a while, as it does not on a project's tree).
Also times the whole CLI (`relaunch images plan --offline --json`, start-up included).

    python benchmarks/stack_plan.py                 # full size
    python benchmarks/stack_plan.py --files 2000 --mb 40

Prints one JSON object. Targets: warm plan <= 1.0x `git status`; cold >= 400 MB/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

from relaunch.images.fingerprint import fingerprints  # noqa: E402
from relaunch.images.stack import load_stack  # noqa: E402
from relaunch.spec.loader import load_project  # noqa: E402


def generate(root: Path, files: int, total_bytes: int, seed: int = 7) -> int:
    """``files`` files in a 3-level tree, sizes log-uniform around the mean."""
    rng = random.Random(seed)
    weights = [rng.lognormvariate(0, 1.2) for _ in range(files)]
    scale = total_bytes / sum(weights)
    block = rng.randbytes(1 << 20)
    written = 0
    per_dir = 50
    for i, w in enumerate(weights):
        size = max(1, int(w * scale))
        d = root / f"pkg{i // (per_dir * 40):03d}" / f"mod{(i // per_dir) % 40:02d}"
        if i % per_dir == 0:
            d.mkdir(parents=True, exist_ok=True)
        # unique content per file: a header, then slices of a random block
        data = bytearray(f"file {i}\n".encode())
        while len(data) < size:
            off = rng.randrange(len(block) - 1)
            data += block[off : off + min(size - len(data), len(block) - off)]
        (d / f"f{i:06d}.py").write_bytes(bytes(data[:size]))
        written += size
    (root / "Dockerfile").write_text("FROM python:3.11-slim\nCOPY . /app\n")
    (root / ".dockerignore").write_text("**/__pycache__\n*.tmp\n")
    (root / "relaunch.toml").write_text('[images.app]\ndockerfile = "Dockerfile"\n')
    return written


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=b", "-c", "user.email=b@b.invalid", *args],
        check=True,
        capture_output=True,
    )


def timed(fn: object, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=50_000)
    ap.add_argument("--mb", type=int, default=1024, help="total size in MiB")
    ap.add_argument("--runs", type=int, default=5, help="repetitions of the warm timings")
    ap.add_argument("--dir", type=Path, default=None, help="where to generate (default: tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the generated tree")
    ap.add_argument(
        "--settle", type=float, default=30.0, help="seconds after sync before the settled timings"
    )
    a = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="relaunch-bench-", dir=a.dir))
    root = base / "project"
    root.mkdir()
    try:
        t = time.perf_counter()
        total = generate(root, a.files, a.mb << 20)
        gen_s = time.perf_counter() - t
        git(root, "init", "-q")
        git(root, "-c", "core.looseCompression=0", "add", "-A")
        git(root, "commit", "-qm", "bench")
        subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True)

        config = load_project(root / "relaunch.toml")
        stack = load_stack(config)
        cache = stack.state_dir / "stat-cache"

        def plan() -> str:
            return fingerprints(stack)["app"].tag

        cache.unlink(missing_ok=True)
        t = time.perf_counter()
        tag = plan()
        cold_s = time.perf_counter() - t
        assert cache.is_file()
        warm_fresh = timed(plan, a.runs)
        assert plan() == tag

        def git_status() -> None:
            subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain"], check=True, capture_output=True
            )

        git_fresh = timed(git_status, a.runs)
        # Right after 1 GB was written, the kernel's writeback threads hold a core for
        # tens of seconds: timed again once the tree has settled, as a project's is.
        os.sync()
        time.sleep(a.settle)
        warm = timed(plan, a.runs)
        git_s = timed(git_status, a.runs)
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        cli = [sys.executable, "-m", "relaunch.cli.main", "images", "plan", "--offline", "--json"]

        def cli_plan() -> None:
            subprocess.run(cli, cwd=root, env=env, check=True, capture_output=True)

        cli_s = timed(cli_plan, max(1, a.runs // 2))
        warm_med, git_med = statistics.median(warm), statistics.median(git_s)
        print(
            json.dumps(
                {
                    "files": a.files,
                    "bytes": total,
                    "generate_s": round(gen_s, 2),
                    "page_cache": "warm (files were just written; no cache drop)",
                    "cold_plan_s": round(cold_s, 3),
                    "cold_hash_MBps": round(total / 1e6 / cold_s, 1),
                    "warm_plan_s_median": round(warm_med, 4),
                    "warm_plan_s_all": [round(x, 4) for x in warm],
                    "git_status_s_median": round(git_med, 4),
                    "git_status_s_all": [round(x, 4) for x in git_s],
                    "ratio_warm_over_git_status": round(warm_med / git_med, 3),
                    "settle_s": a.settle,
                    "right_after_writing": {
                        "warm_plan_s_median": round(statistics.median(warm_fresh), 4),
                        "git_status_s_median": round(statistics.median(git_fresh), 4),
                        "ratio": round(
                            statistics.median(warm_fresh) / statistics.median(git_fresh), 3
                        ),
                    },
                    "cli_warm_plan_s_median": round(statistics.median(cli_s), 3),
                    "tag": tag,
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "git": subprocess.run(
                        ["git", "--version"], capture_output=True, text=True
                    ).stdout.strip(),
                },
                indent=2,
            )
        )
    finally:
        if not a.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
