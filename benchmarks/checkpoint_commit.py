"""Checkpoint figures (issue 10), printed as one JSON document:

- ``notice_to_commit``: a trainer under the real runtime gets the preemption notice
  (SIGTERM to the runtime, as a spot VM's shutdown sends it), writes a checkpoint of
  ``--size-mb`` MB atomically (fsync, rename) and reports it; seconds until LATEST names
  it, split into the trainer's write and relaunch's report → commit, on a local store
  and on the fake GCS (tests/fakegcp, HTTP on 127.0.0.1). Baseline in the same
  run: the bare ``upload_file`` of a file of the same size to the same store. A GCE
  spot VM gives 30 s.
- ``steps_redone``: for each integration's example (frameworks installed), the steps a
  notice costs: the step the trainer had reached minus the step the next attempt resumes.

    python benchmarks/checkpoint_commit.py [--size-mb 1024] [--skip-examples]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakegcp.fake import FakeGCP  # noqa: E402

from relaunch.store import open_store  # noqa: E402

TRAINER = """
import os, signal, sys, time
from relaunch.runtime import report
size = int(sys.argv[1]) << 20
folder = os.environ["RELAUNCH_CHECKPOINT_DIR"]
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
step = 0
while not stop:
    step += 1; report(step); time.sleep(0.02)
chunk = os.urandom(1 << 20)
tmp, path = os.path.join(folder, "last.pt.tmp"), os.path.join(folder, "last.pt")
with open(tmp, "wb") as f:
    for _ in range(size >> 20):
        f.write(chunk)
    f.flush(); os.fsync(f.fileno())
os.replace(tmp, path)
open(sys.argv[2], "w").write(repr(time.time()))
report(step, checkpoint=True, path="last.pt")
print(f"saved {step}", flush=True)
"""


def _runtime_env(store_url: str, scratch: Path, run_id: str, n: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        RELAUNCH_RUN_ID=run_id,
        RELAUNCH_ATTEMPT=str(n),
        RELAUNCH_STORE=store_url,
        RELAUNCH_SCRATCH=str(scratch),
        RELAUNCH_CHECKPOINT_DIR=str(scratch / "checkpoints"),
        RELAUNCH_RUNTIME=json.dumps({"heartbeat_interval": 1, "grace_period": 120}),
        PYTHONPATH=str(ROOT),
    )
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _latest_step(store: Any, run_id: str) -> int | None:
    try:
        return json.loads(store.get(f"runs/{run_id}/checkpoints/LATEST")[0]).get("step")
    except Exception:
        return None


def _progress_step(scratch: Path) -> int:
    try:
        return int(json.loads((scratch / "progress.json").read_text()).get("step") or 0)
    except (OSError, ValueError):
        return 0


def notice_to_commit(store_url: str, size_mb: int, tmp: Path) -> dict[str, float]:
    store = open_store(store_url)
    run_id = f"bench-{os.getpid()}-{int(time.time() * 1000) % 100000}"
    store.put(f"runs/{run_id}/run.json", json.dumps({"attempt": 1}).encode())
    scratch = tmp / run_id
    proc = subprocess.Popen(
        [sys.executable, "-m", "relaunch.runtime", "--", sys.executable, "-c", TRAINER,
         str(size_mb), str(tmp / f"{run_id}.written")],
        env=_runtime_env(store_url, scratch, run_id, 1), cwd=ROOT, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while _progress_step(scratch) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    start, wall = time.perf_counter(), time.time()
    os.kill(proc.pid, signal.SIGTERM)
    while _latest_step(store, run_id) is None and time.perf_counter() - start < 600:
        time.sleep(0.02)
    committed = time.perf_counter() - start
    written = float((tmp / f"{run_id}.written").read_text()) - wall
    proc.wait(600)
    # baseline: the bare upload of a file of the same size to the same store
    blob = tmp / "baseline.bin"
    with open(blob, "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(size_mb):
            f.write(chunk)
    t = time.perf_counter()
    store.upload_file(f"bench/{run_id}/baseline.bin", blob)
    upload = time.perf_counter() - t
    blob.unlink()
    return {"notice_to_commit_s": round(committed, 2),
            "trainer_write_s": round(written, 2),  # notice → the trainer's file is on disk
            "report_to_commit_s": round(committed - written, 2),  # relaunch's part
            "baseline_upload_s": round(upload, 2),
            "fits_30s_spot_notice": committed < 30}  # fmt: skip


EXAMPLES = {
    "pytorch": ("torch", [sys.executable, "train.py", "--steps", "400", "--step-time", "0.05"]),
    "hf": ("transformers", [sys.executable, "train.py", "--steps", "400", "--step-time", "0.05"]),
    "lightning": ("lightning", [sys.executable, "train.py", "--steps", "400", "--step-time",
                  "0.05"]),
    "accelerate": ("accelerate", [str(Path(sys.executable).with_name("accelerate")), "launch",
                   "--cpu", "--num_processes=1", "--num_machines=1", "--mixed_precision=no",
                   "--dynamo_backend=no", "train.py", "--steps", "400", "--step-time", "0.05"]),
}  # fmt: skip


def steps_redone(name: str, argv: list[str], tmp: Path) -> dict[str, Any]:
    store_url = str(tmp / f"store-{name}")
    store = open_store(store_url)
    run_id = f"redo-{name}"
    out: dict[str, Any] = {}
    for n in (1, 2):
        store.put(f"runs/{run_id}/run.json", json.dumps({"attempt": n}).encode())
        scratch = tmp / f"{name}-{n}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "relaunch.runtime", "--", *argv, "--out", str(tmp / "f.json")],
            env=_runtime_env(store_url, scratch, run_id, n), cwd=ROOT / "examples" / name,
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        base = _latest_step(store, run_id) or 0
        deadline = time.monotonic() + 300
        while _progress_step(scratch) < base + 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(300)
        reached = _progress_step(scratch)
        resumed = _latest_step(store, run_id) or 0
        out[f"preemption_{n}"] = {"reached": reached, "resumes_at": resumed,
                                  "redone": max(0, reached - resumed)}  # fmt: skip
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--size-mb", type=int, default=1024)
    p.add_argument("--skip-examples", action="store_true")
    a = p.parse_args()
    result: dict[str, Any] = {"size_mb": a.size_mb, "notice_to_commit": {}, "steps_redone": {}}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        result["notice_to_commit"]["local"] = notice_to_commit(str(tmp / "store"), a.size_mb, tmp)
        with FakeGCP(tmp / "fake") as fake:
            os.environ.update(fake.env())
            fake.gcs.create_bucket("runs")
            result["notice_to_commit"]["fake-gcs"] = notice_to_commit(
                "gs://runs/relaunch", a.size_mb, tmp
            )
        if not a.skip_examples:
            import importlib.util

            for name, (module, argv) in EXAMPLES.items():
                if importlib.util.find_spec(module) is not None:
                    result["steps_redone"][name] = steps_redone(name, argv, tmp)
    commits = result["notice_to_commit"].values()
    redone = [p["redone"] for r in result["steps_redone"].values() for p in r.values()]
    result["met"] = {
        "notice_to_commit_under_30s": all(c["fits_30s_spot_notice"] for c in commits),
        "zero_steps_redone_with_a_notice": all(r == 0 for r in redone),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
