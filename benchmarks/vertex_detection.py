"""Vertex AI: how fast the agent sees a CustomJob end, and how hard it uses the API.

Runs against the fake cloud (tests/fakegcp: Vertex AI and GCS over HTTP on 127.0.0.1,
each job's command run as a local process), with relaunch's defaults: the agent ticks
every 5 s on a gs:// store and reads each job every 10 s.

- detection latency: the job reaches a terminal state in the fake (its ``endTime``) →
  the attempt is recorded as ended in the store, for four endings — the command
  exits 0 (SUCCEEDED), Vertex fails the job after a spot preemption, the job is
  cancelled outside relaunch, the image cannot be pulled (no runtime ever runs).
- baseline in the same run: a bare loop around ``get_custom_job`` at the same 10 s
  interval (what polling alone gives), and one ``get_custom_job`` round trip (the floor).
- API calls per job-hour: Vertex API requests while one job runs for ``--hold``
  seconds, scaled to an hour; GCS requests (the store) likewise.

    python benchmarks/vertex_detection.py [--rounds 3] [--hold 120]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(Path(__file__).parent)]

import yaml  # noqa: E402
from _common import emit, summary  # noqa: E402
from tests.fakegcp.fake import FakeGCP  # noqa: E402

IMAGE = "us-central1-docker.pkg.dev/fake-project/repo/trainer:0123456789ab"
SLEEPER = "import time, sys; time.sleep(float(sys.argv[1]))"


def end_time(job: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(str(job["endTime"]).replace("Z", "+00:00")).timestamp()


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

    def submit(self, name: str, seconds: float, **extra: Any) -> str:
        doc = {
            "name": name,
            "backend": "vertex",
            "image": IMAGE,
            "command": ["python", "-c", SLEEPER, str(seconds)],
            "resources": {"machine_type": "n1-standard-4"},
            **extra,
        }
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc))
        return self.ws.submit(path)

    def job(self, run_id: str) -> dict[str, Any] | None:
        attempts = self.ws.repo.attempts(run_id, max(1, self.ws.repo.get_run(run_id).attempt))
        name = attempts[0].handle["name"] if attempts and attempts[0].handle else None
        return self.fake.vertex.jobs[name].resource if name else None

    def wait(self, check: Any, timeout: float = 120.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError("benchmark step did not finish in time")

    def ended_at(self, run_id: str) -> float:
        def done() -> float | None:
            found = self.ws.repo.find_attempt(run_id, 1)
            return found[0].ended_at if found and found[0].ended_at else None

        return float(self.wait(done))

    def detection(self, ending: str, i: int) -> float:
        if ending == "image-pull":
            self.fake.faults.image_pull(IMAGE, times=1)
        # max_recoveries 0: a preempted run ends instead of holding an agent slot
        rid = self.submit(
            f"{ending}-{i}", 3 if ending == "succeeded" else 600, retry={"max_recoveries": 0}
        )
        job = self.wait(lambda: self.job(rid))
        if ending in ("preempted", "cancelled"):
            self.wait(lambda: job["state"] == "JOB_STATE_RUNNING" and time.sleep(2) is None)
            if ending == "preempted":
                self.fake.vertex.preempt(job["name"])
            else:
                from relaunch.gcp.clients import vertex_job_client

                vertex_job_client("us-central1").cancel_custom_job(name=job["name"])
        ended = self.ended_at(rid)
        return ended - end_time(job)

    def stop(self) -> None:
        self.agent.stopping.set()
        self.thread.join(timeout=30)


def bare_poller(fake: FakeGCP, interval: float, rounds: int) -> tuple[list[float], list[float]]:
    """Baseline: create a job that ends after 3 s, poll it with get_custom_job every
    ``interval`` seconds; detection = first terminal read - endTime. Also the time of
    one get_custom_job call."""
    from google.cloud import aiplatform_v1 as ai

    from relaunch.gcp.clients import vertex_job_client

    client = vertex_job_client("us-central1")
    done = {ai.JobState.JOB_STATE_SUCCEEDED, ai.JobState.JOB_STATE_FAILED}
    detections, calls = [], []
    for i in range(rounds):
        job = client.create_custom_job(
            parent=f"projects/{fake.project}/locations/us-central1",
            custom_job=ai.CustomJob(
                display_name=f"baseline-{i}",
                job_spec=ai.CustomJobSpec(
                    worker_pool_specs=[
                        ai.WorkerPoolSpec(
                            machine_spec=ai.MachineSpec(machine_type="n1-standard-4"),
                            replica_count=1,
                            container_spec=ai.ContainerSpec(
                                image_uri=IMAGE, command=["python", "-c", SLEEPER, "3"]
                            ),
                        )
                    ]
                ),
            ),
        )
        time.sleep(interval * (i + 1) / (rounds + 1))  # spread the phase of the loop
        while True:
            start = time.perf_counter()
            got = client.get_custom_job(name=job.name)
            calls.append(time.perf_counter() - start)
            if got.state in done:
                detections.append(time.time() - got.end_time.timestamp())
                break
            time.sleep(interval)
    return detections, calls


def store_calls_by_key(requests: list[bytes], scale: float) -> dict[str, int]:
    """Store requests by what they touch (the last part of the object name)."""
    counts: dict[str, int] = {}
    for raw in requests:
        line = raw.split(b"\n", 1)[0].decode(errors="replace")
        if "/storage/v1/" not in line:
            continue
        match = re.search(r"relaunch(?:%2F|/)(.*?)(?:[ '&?]|$)", line)
        name = unquote(match.group(1)) if match else "(list)"
        kind = re.sub(r"runs/[^/]+/", "runs/RUN/", name)
        kind = re.sub(r"/\d+(\.json|\.log)?$", r"/N\1", kind)
        kind = re.sub(r"agents/.*", "agents/AGENT.json", kind)
        kind = re.sub(r"queues/.*", "queues/…", kind)
        counts[kind] = counts.get(kind, 0) + 1
    return {k: round(v * scale) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3, help="samples per ending")
    parser.add_argument("--hold", type=float, default=120.0, help="seconds of the rate job")
    args = parser.parse_args()
    from relaunch.backends.vertex.backend import POLL_INTERVAL
    from relaunch.store.gcs import GCSStore  # noqa: F401  (import before timing)

    with tempfile.TemporaryDirectory() as tmp, FakeGCP(Path(tmp) / "fake") as fake:
        os.environ.update(fake.env())
        os.environ.pop("RELAUNCH_VERTEX_POLL_INTERVAL", None)
        bench = Bench(Path(tmp), fake)
        endings = ("succeeded", "preempted", "cancelled", "image-pull")
        detection = {e: [bench.detection(e, i) for i in range(args.rounds)] for e in endings}
        # API use while one job runs for --hold seconds.
        before = (len(fake.requests("aiplatform")), len(fake.requests("storage")))
        rid = bench.submit("hold", args.hold + 30)
        bench.wait(lambda: (bench.job(rid) or {}).get("state") == "JOB_STATE_RUNNING")
        start_counts = (len(fake.requests("aiplatform")), len(fake.requests("storage")))
        first_raw = len(fake.router.requests)
        time.sleep(args.hold)
        end_counts = (len(fake.requests("aiplatform")), len(fake.requests("storage")))
        by_key = store_calls_by_key(fake.router.requests[first_raw:], 3600 / args.hold)
        bench.ws.stop(rid, wait=0)
        bench.stop()
        base, calls = bare_poller(fake, POLL_INTERVAL, args.rounds)
    per_hour = 3600 / args.hold
    emit(
        {
            "benchmark": "vertex_detection",
            "defaults": {"agent_tick_s": 5.0, "vertex_poll_s": POLL_INTERVAL},
            "detection_s": {e: summary(v) for e, v in detection.items()},
            "baseline_bare_poll_s": summary(base),
            "baseline_get_custom_job_s": summary(calls),
            "vertex_calls_per_job_hour": round((end_counts[0] - start_counts[0]) * per_hour),
            "store_calls_per_job_hour": round((end_counts[1] - start_counts[1]) * per_hour),
            "store_calls_per_job_hour_by_key": by_key,
            "setup_calls": {"vertex": start_counts[0] - before[0]},
        }
    )


if __name__ == "__main__":
    main()
