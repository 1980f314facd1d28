"""GCE spot VMs: preemption notice → checkpoint committed, VM gone → next VM inserted,
and Compute API calls per VM-hour.

Runs against the fake cloud (tests/fakegcp: Compute, its per-VM metadata server and
GCS over HTTP on 127.0.0.1), where each VM runs relaunch's real start-up script with
stand-ins for the COS tools and the trainer as a local process. relaunch's defaults:
the agent ticks every 5 s on a gs:// store and reads each VM every 10 s. The fake
gives the VM Google's spot notice: 30 s between ``instance/preempted`` and the kill.

- notice → committed: ``instance/preempted`` turns TRUE → the store's
  ``checkpoints/LATEST`` names the checkpoint the trainer wrote on SIGTERM (a
  ``--blob-mb`` file, 1 GB by default, uploaded to the fake GCS). Must fit in 30 s.
  Baseline in the same run: one ``store.put`` of the same bytes (the upload floor).
- VM gone → next VM inserted: the preempted VM disappears from the fake → the insert
  of the next attempt's VM arrives.
- Compute calls per VM-hour: requests while one VM runs for ``--hold`` seconds.

    python benchmarks/gce_preemption.py [--rounds 2] [--blob-mb 1024] [--hold 60]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from math import inf
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(Path(__file__).parent)]

import yaml  # noqa: E402
from _common import emit, summary  # noqa: E402
from tests.fakegcp.fake import FakeGCP  # noqa: E402

IMAGE = "us-central1-docker.pkg.dev/fake-project/repo/trainer:0123456789ab"
TRAINER = Path(__file__).with_name("_trainer.py")
SPOT_NOTICE = 30.0


class Bench:
    def __init__(self, root: Path, fake: FakeGCP) -> None:
        from relaunch.agent.loop import Agent
        from relaunch.api import Workspace
        from relaunch.spec.project import ProjectConfig
        from relaunch.store.gcs import GCSStore

        fake.gcs.create_bucket("runs")
        config = ProjectConfig.model_validate(
            {"gcp": {"project": fake.project, "region": "us-central1"}}
        )
        config._root = root
        self.root, self.fake = root, fake
        self.ws = Workspace(config, GCSStore("gs://runs/relaunch"))
        self.agent = Agent(self.ws.store, log=lambda _m: None)  # default tick (5 s on gs://)
        self.thread = threading.Thread(target=self.agent.run, daemon=True)
        self.thread.start()

    def submit(self, name: str, blob_mb: int) -> str:
        doc = {
            "name": name,
            "backend": "gce",
            "image": IMAGE,
            "command": ["python", str(TRAINER), str(self.root / "markers"), "100000", "0.05",
                        str(blob_mb)],
            "resources": {"machine_type": "n1-standard-4", "accelerator_type": "NVIDIA_TESLA_T4",
                          "accelerator_count": 1, "zones": ["us-central1-a"]},
            "checkpoints": {"sync_interval": 0},
            "grace_period": 25,
        }  # fmt: skip
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc))
        return self.ws.submit(path)

    def wait(self, check: Any, timeout: float = 300.0, every: float = 0.01) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(every)
        raise TimeoutError("benchmark step did not finish in time")

    def latest(self, run_id: str) -> bytes | None:
        from relaunch.runs import keys

        try:
            return self.ws.store.get(keys.latest_checkpoint_key(run_id))[0]
        except Exception:
            return None

    def vm_names(self) -> set[str]:
        with self.fake.compute.lock:
            return {n for _, n in self.fake.compute.vms}

    def round(self, run_id: str, n: int) -> dict[str, float | None]:
        """Preempt attempt ``n``'s VM once it trains; the phases in seconds (None: the
        checkpoint was not committed before the VM was gone)."""
        import json

        vm = f"{run_id}-{n}"

        def training() -> bool:
            found = self.ws.repo.heartbeat(run_id)
            return found is not None and found[0].attempt == n and (found[0].step or 0) > 5

        self.wait(training, every=0.1)
        before = self.latest(run_id)
        noticed = time.time()
        self.fake.compute.preempt(vm)
        term = self.root / "markers" / f"{run_id}.{n}.term"
        saved = self.wait(lambda: term.exists() and json.loads(term.read_text()), every=0.05)
        try:
            self.wait(lambda: self.latest(run_id) != before, SPOT_NOTICE + 30, every=0.1)
            committed: float | None = time.time() - noticed
        except TimeoutError:
            committed = None
        self.wait(lambda: vm not in self.vm_names(), every=0.05)
        gone = time.time()
        self.wait(lambda: f"{run_id}-{n + 1}" in self.vm_names(), every=0.05)
        return {
            "notice_to_trainer_saved": saved["time"] - noticed,
            "notice_to_committed": committed,
            "gone_to_next_insert": time.time() - gone,
        }

    def stop(self) -> None:
        self.agent.stopping.set()
        self.thread.join(timeout=30)


def upload_floor(ws: Any, blob_mb: int) -> float:
    data = os.urandom(1 << 20) * blob_mb
    start = time.perf_counter()
    ws.store.put("bench/floor.bin", data)
    took = time.perf_counter() - start
    ws.store.delete("bench/floor.bin")
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2, help="preemptions of one run")
    parser.add_argument("--blob-mb", type=int, default=1024, help="checkpoint size")
    parser.add_argument("--hold", type=float, default=60.0, help="seconds of the rate VM")
    args = parser.parse_args()
    from relaunch.backends.gce.backend import POLL_INTERVAL

    with tempfile.TemporaryDirectory() as tmp, FakeGCP(Path(tmp) / "fake") as fake:
        fake.notice = SPOT_NOTICE
        os.environ.update(fake.env())
        os.environ.pop("RELAUNCH_GCE_POLL_INTERVAL", None)
        bench = Bench(Path(tmp), fake)
        floor = [upload_floor(bench.ws, args.blob_mb) for _ in range(2)]
        print(json.dumps({"store_put_floor_s": floor}), file=sys.stderr, flush=True)
        # API use while one VM runs for --hold seconds (a small checkpoint).
        rid = bench.submit("hold", 1)
        bench.wait(lambda: (bench.ws.repo.heartbeat(rid) or (None,))[0] is not None)
        start = len(fake.requests("compute")), len(fake.requests("storage"))
        time.sleep(args.hold)
        end = len(fake.requests("compute")), len(fake.requests("storage"))
        bench.ws.stop(rid, wait=60)
        rounds = []
        rid = bench.submit("preempted", args.blob_mb)
        for n in range(1, args.rounds + 1):
            rounds.append(bench.round(rid, n))
            print(json.dumps(rounds[-1]), file=sys.stderr, flush=True)
        bench.ws.stop(rid, wait=60)
        bench.stop()
    per_hour = 3600 / args.hold
    emit(
        {
            "benchmark": "gce_preemption",
            "defaults": {"agent_tick_s": 5.0, "gce_poll_s": POLL_INTERVAL},
            "checkpoint_mb": args.blob_mb,
            "notice_to_trainer_saved_s": summary([r["notice_to_trainer_saved"] for r in rounds]),
            "notice_to_committed_s": summary([r["notice_to_committed"] or inf for r in rounds]),
            "committed_within_notice": [r["notice_to_committed"] is not None for r in rounds],
            "baseline_store_put_same_bytes_s": summary(floor),
            "vm_gone_to_next_insert_s": summary([r["gone_to_next_insert"] for r in rounds]),
            "compute_calls_per_vm_hour": round((end[0] - start[0]) * per_hour),
            "store_calls_per_vm_hour": round((end[1] - start[1]) * per_hour),
            "met": all((r["notice_to_committed"] or inf) <= SPOT_NOTICE for r in rounds),
        }
    )


if __name__ == "__main__":
    main()
