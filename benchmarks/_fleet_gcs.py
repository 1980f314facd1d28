"""The fake Cloud Storage of the fleet benchmark, in its own process (so its CPU and GIL
are not the measured agent's), counting what it serves.

    python _fleet_gcs.py --bucket B --endpoints agent0,runtime

Prints one JSON line, ``{"main": url, "agent0": url, …}``: one port per kind of client
(tests/fakegcp ``add_endpoint``), so every request is counted for whoever made it, by
Cloud Storage operation class (A: writes, lists; B: reads, metadata; deletes free) and by
kind (operation and key family, ``_gcs_ops.py``).
A *check* of a run is the agent that owns the run receiving the run's heartbeat from the
store — read by itself, or as an item of a listing with its generation — which is how an
agent learns that the run is alive, whatever way it asks. Only the owner's count: with
several agents, each one's listing of ``live/`` carries every run's heartbeat, but only
the owner acts on it. Who owns a run is followed from the lease and agent-record writes
this fake serves (``_fleet_owners.py``); receipts by any agent are kept apart
(``checks_any``). Control routes (benchmark only):

- ``POST /bench/latency?ms=20``: every storage request waits that long from now on;
- ``POST /bench/watch`` ``{"names": {object name: run id}}``: the heartbeat objects;
- ``POST /bench/window``: counting starts afresh now;
- ``GET /bench/stats``: counts by endpoint and class, each run's check times (by its
  owner; by any agent) and each run's owner now (its agent's endpoint).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fleet_owners import Owners, received
from _gcs_ops import key_kind, request_op
from tests.fakegcp.fake import FakeGCP
from tests.fakegcp.gcs_upload import _split_multipart
from tests.fakegcp.server import Request, Response

#: The store's root in the benchmark's bucket (``gs://<bucket>/store``).
ROOT = "store/"


def written(req: Request, resp: Response) -> tuple[str, bytes] | None:
    """``(object name, data)`` of a one-shot upload that succeeded, else None."""
    if req.method != "POST" or resp.status != 200 or not isinstance(resp.body, dict):
        return None
    name = resp.body.get("name")
    if not isinstance(name, str):
        return None
    kind = req.query.get("uploadType")
    if kind == "media":
        return name, req.body
    if kind == "multipart":
        return name, _split_multipart(req)[1]
    return None  # resumable: the benchmark's leases and records are one-shot uploads


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.names: dict[str, str] = {}  # heartbeat object name → run id
        self.agents: set[str] = set()
        self.owners = Owners(ROOT)  # kept across windows: the leases were taken before
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.since = time.time()
            self.ops: Counter[str] = Counter()  # "via:class"
            self.kinds: Counter[str] = Counter()  # "via:class op kind"
            self.checks: dict[str, list[float]] = defaultdict(list)  # by the run's owner
            self.checks_any: dict[str, list[float]] = defaultdict(list)  # by any agent

    def after(self, api: str, req: Request, resp: Response) -> None:
        if api != "storage" or req.via == "main":
            return
        now = time.time()
        body = resp.body if isinstance(resp.body, dict) else {}
        named = body.get("name") if isinstance(body.get("name"), str) else None
        cls, op, name = request_op(req.method, req.path, req.query, named)
        kind = key_kind(name.removeprefix(ROOT)) if name is not None else "-"
        seen: list[str] = []
        if req.via in self.agents and req.method == "GET":
            seen = received(op, name, resp.status, body)
        wrote = written(req, resp)
        with self.lock:
            self.ops[f"{req.via}:{cls}"] += 1
            self.kinds[f"{req.via}:{cls} {op} {kind}"] += 1
            if wrote is not None:
                self.owners.wrote(req.via, *wrote)
            elif op == "delete" and name is not None and resp.status in (200, 204):
                self.owners.deleted(name)
            for obj in seen:
                rid = self.names.get(obj)
                if rid is None:
                    continue
                self.checks_any[rid].append(now)
                if self.owners.owner(rid) == req.via:
                    self.checks[rid].append(now)

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "since": self.since,
                "until": time.time(),
                "ops": dict(self.ops),
                "kinds": dict(self.kinds),
                "checks": {k: list(v) for k, v in self.checks.items()},
                "checks_any": {k: list(v) for k, v in self.checks_any.items()},
                "owners": {rid: self.owners.owner(rid) for rid in self.names.values()},
            }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bucket", required=True)
    p.add_argument("--endpoints", default="")
    args = p.parse_args()
    counts = Counts()
    with tempfile.TemporaryDirectory(prefix="relaunch-fleet-gcs-") as tmp:
        fake = FakeGCP(Path(tmp))
        fake.execute = False
        fake.router.keep_requests = False
        fake.router.after = counts.after
        fake.gcs.create_bucket(args.bucket)

        def latency(req: Request) -> dict[str, Any]:
            fake.set_latency(float(req.query.get("ms", "0")), "storage")
            return {}

        def watch(req: Request) -> dict[str, Any]:
            counts.names = dict(req.json()["names"])
            return {}

        def window(req: Request) -> dict[str, Any]:
            counts.reset()
            return {}

        fake.router.add("bench", "POST", r"/bench/latency", latency)
        fake.router.add("bench", "POST", r"/bench/watch", watch)
        fake.router.add("bench", "POST", r"/bench/window", window)
        fake.router.add("bench", "GET", r"/bench/stats", lambda req: counts.stats())
        stopping = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        with fake:
            urls = {"main": fake.url}
            for name in filter(None, args.endpoints.split(",")):
                urls[name] = fake.add_endpoint(name)
                if name.startswith("agent"):
                    counts.agents.add(name)
            print(json.dumps(urls), flush=True)
            stopping.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
