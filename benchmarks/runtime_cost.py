"""What the runtime wrapper costs while the trainer runs, and what one store request costs.

- Memory: PSS and USS (private pages) of each ``relaunch-runtime`` process
  (``/proc/PID/smaps_rollup``) around a trainer that sleeps, with 1 and with
  ``--many`` wrappers running at once, on a local store and on a gs:// store (the fake
  Cloud Storage of tests/fakegcp on 127.0.0.1). The trainer itself is not counted.
- CPU: % of one core each wrapper used (all its threads, ``/proc/PID/task/*/schedstat``)
  over ``--seconds`` once its first heartbeat is written, default settings (heartbeat
  every 10 s, log upload when the log grew, checkpoint scans every 30 s).
- On Vertex AI (unless ``--no-vertex``): the same on a gs:// store whose requests are
  signed, in the environment the Vertex backend gives a job's container (_vertex_job.py):
  ``vertex`` takes the token from the job VM's metadata server as the backend says
  (``RELAUNCH_CREDENTIALS``); ``vertex_google_auth`` is the baseline, the path the
  runtime took before — ``google.auth.default()`` finding that server by itself.
  With ``--tls`` those wrappers reach the fake's storage over https (a throwaway
  certificate for 127.0.0.1, found through ``SSL_CERT_DIR``: a copy of the system's
  hashed CA folder with it added), so they pay for TLS as on Google's machines;
  without it over plain http, like the unsigned ``gs`` wrappers.
- Baseline in the same run: a bare ``python -c "import time; time.sleep(…)"`` process.
- Store client: CPU per request in a separate process (so the fake server's CPU is not
  counted) for ``get`` of a small object, ``put`` (create), and ``get`` of a missing
  object, with the store's own client and with google-cloud-storage (which, for a
  missing object, also starts a bucket GET in the background).

    python benchmarks/runtime_cost.py [--seconds 60] [--many 10] [--requests 300] [--tls]
    python benchmarks/runtime_cost.py --src /path/to/other/checkout/src   # compare

``--src`` runs the wrappers from another source tree (e.g. ``git archive`` of an earlier
commit), to measure what a change saved.
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
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(Path(__file__).parent)]

from _common import emit  # noqa: E402
from _vertex_job import KINDS, LAUNCH, job_env, metadata_server  # noqa: E402

TARGET_PSS_MB = 15.0
TARGET_CPU_PERCENT = 0.1


def memory_mb(pid: int) -> dict[str, float]:
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        fields[name] = int(rest.split()[0])
    private = fields["Private_Clean"] + fields["Private_Dirty"]
    return {
        "rss": round(fields["Rss"] / 1024, 2),
        "pss": round(fields["Pss"] / 1024, 2),
        "uss": round(private / 1024, 2),
    }


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid`` (nanosecond precision, unlike /proc/PID/stat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError):
            continue
    return total / 1e9


def prepare_run(store: Any, run_id: str) -> None:
    from relaunch.runs import keys
    from relaunch.store.base import put_json

    put_json(store, keys.run_key(run_id), {"attempt": 1})


def heartbeat_phase(store: Any, run_id: str) -> str | None:
    from relaunch.errors import ObjectNotFound
    from relaunch.runs import keys

    try:
        return str(json.loads(store.get(keys.heartbeat_key(run_id))[0]).get("phase"))
    except ObjectNotFound:
        return None


def start_wrappers(
    store_url: str,
    store: Any,
    n: int,
    tag: str,
    scratch: Path,
    sleep: float,
    src: str | None,
    vertex: tuple[str, Any, str, Any] | None = None,
) -> list[subprocess.Popen[bytes]]:
    """``n`` wrappers around a sleeping trainer, each with its own run. ``vertex``:
    ``(kind, fake, metadata host, tls)`` — started as in a Vertex job (_vertex_job.py)."""
    procs = []
    for i in range(n):
        run_id = f"{tag}-{i}"
        prepare_run(store, run_id)
        argv = [sys.executable, "-m", "relaunch.runtime", "--"]
        if vertex is None:
            env = dict(os.environ)
            env.update(
                RELAUNCH_RUN_ID=run_id,
                RELAUNCH_ATTEMPT="1",
                RELAUNCH_STORE=store_url,
                RELAUNCH_SCRATCH=str(scratch / run_id),
            )
        else:
            kind, fake, host, tls = vertex
            env = job_env(kind, store, run_id, fake, host, scratch, tls)
            argv = [sys.executable, "-c", LAUNCH, "--"]
        env["PYTHONPATH"] = src or str(ROOT / "src")
        argv += [sys.executable, "-c", f"import time; time.sleep({sleep})"]
        procs.append(
            subprocess.Popen(
                argv,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
    deadline = time.monotonic() + 120
    for i in range(n):
        while heartbeat_phase(store, f"{tag}-{i}") != "running":
            if time.monotonic() > deadline:
                raise SystemExit(f"wrapper {tag}-{i} never wrote its first heartbeat")
            time.sleep(0.2)
    return procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for p in procs:
        p.wait()


def measure(pids: list[int], seconds: float) -> list[dict[str, float]]:
    before = {pid: cpu_seconds(pid) for pid in pids}
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    out = []
    for pid in pids:
        used = cpu_seconds(pid) - before[pid]
        out.append({**memory_mb(pid), "cpu_percent": round(100 * used / elapsed, 4)})
    return out


def mean(rows: list[dict[str, float]], key: str) -> float:
    return round(sum(r[key] for r in rows) / len(rows), 3)


def phase(
    fake: Any,
    root: Path,
    n: int,
    seconds: float,
    src: str | None,
    vertex: bool,
    tls: tuple[str, Path] | None = None,
) -> dict[str, Any]:
    """``n`` wrappers on each store (and, with ``vertex``, ``n`` in a Vertex job's
    environment each way) plus one bare sleeper, measured over the same window."""
    from relaunch.store import open_store

    sleep = seconds + 600
    bare = subprocess.Popen(
        [sys.executable, "-c", f"import time; time.sleep({sleep})"], start_new_session=True
    )
    stores = {"local": str(root / f"store-{n}"), "gs": f"gs://bench/n{n}"}
    if vertex:
        stores.update({kind: f"gs://bench/{kind}-n{n}" for kind in KINDS})
    procs: dict[str, list[subprocess.Popen[bytes]]] = {}
    server = metadata_server(fake) if vertex else None
    try:
        for kind, url in stores.items():
            store = open_store(url)
            job = (kind, fake, server.host, tls) if kind in KINDS and server else None
            tag = f"{kind}-{n}".replace("_", "-")
            procs[kind] = start_wrappers(url, store, n, tag, root, sleep, src, job)
        time.sleep(2)  # past start-up: restore, first heartbeat, first log upload
        pids = [bare.pid] + [p.pid for kind in stores for p in procs[kind]]
        rows = dict(zip(pids, measure(pids, seconds), strict=False))
    finally:
        for group in procs.values():
            stop(group)
        stop([bare])
        if server is not None:
            server.stop()
    out: dict[str, Any] = {"wrappers_per_store": n, "bare_python_sleep": rows[bare.pid]}
    for kind in stores:
        mine = [rows[p.pid] for p in procs[kind]]
        out[kind] = {k: mean(mine, k) for k in ("rss", "pss", "uss", "cpu_percent")}
        out[kind]["cpu_percent_max"] = max(r["cpu_percent"] for r in mine)
    if server is not None:
        # one token per wrapper: the backend's word makes the store fetch it itself
        out["metadata_token_requests"] = server.tokens_issued
        ours, theirs = out["vertex"], out["vertex_google_auth"]
        out["vertex_vs_google_auth"] = {
            "pss_mb_saved": round(theirs["pss"] - ours["pss"], 2),
            "pss_ratio": round(theirs["pss"] / ours["pss"], 2),
            "cpu_percent_saved": round(theirs["cpu_percent"] - ours["cpu_percent"], 4),
        }
    return out


CLIENT = r"""
import json, sys, time
sys.path.insert(0, sys.argv[3])
kind, n = sys.argv[1], int(sys.argv[2])
if kind == "raw":
    from relaunch.store.gcs import GCSStore
    from relaunch.errors import ObjectNotFound
    store = GCSStore("gs://bench/client")
    get = lambda k: store.get(k)
    put = lambda k, d: store.put(k, d, if_generation_match=0)
    missing_error = ObjectNotFound
else:
    from google.api_core.exceptions import NotFound
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    import os
    client = storage.Client(
        project="bench", credentials=AnonymousCredentials(),
        client_options={"api_endpoint": os.environ["RELAUNCH_STORAGE_ENDPOINT"]},
    )
    bucket = client.bucket("bench")
    get = lambda k: bucket.blob("client/" + k).download_as_bytes()
    put = lambda k, d: bucket.blob("client/" + k).upload_from_string(d, if_generation_match=0)
    missing_error = NotFound
put("warm-" + kind, b"x"); get("warm-" + kind)
out = {}
def timed(name, fn):
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(n):
        fn(i)
    out[name] = {"cpu_ms": round(1000 * (time.process_time() - cpu) / n, 3),
                 "wall_ms": round(1000 * (time.perf_counter() - wall) / n, 3)}
timed("put", lambda i: put(f"{kind}/{i}", b'{"step": 1}'))
timed("get", lambda i: get(f"{kind}/{i}"))
def miss(i):
    try:
        get(f"{kind}/missing-{i}")
    except missing_error:
        pass
timed("get_missing", miss)
time.sleep(1)  # let background requests (a library's bucket GET) finish
print(json.dumps(out))
"""


def client_cost(fake: Any, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("raw", "google-cloud-storage"):
        before = len(fake.requests("storage"))
        res = subprocess.run(
            [sys.executable, "-c", CLIENT, "raw" if kind == "raw" else "lib", str(n),
             str(ROOT / "src")],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        out[kind] = json.loads(res.stdout)
        sent = len(fake.requests("storage")) - before - 2  # minus the warm-up
        out[kind]["requests_per_call"] = round(sent / (3 * n), 3)
    raw, lib = out["raw"], out["google-cloud-storage"]
    out["cpu_ratio_library_over_raw"] = {
        op: round(lib[op]["cpu_ms"] / max(raw[op]["cpu_ms"], 1e-6), 1) for op in raw
        if isinstance(raw[op], dict)
    }  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--many", type=int, default=10)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--src", help="run the wrappers from this source tree instead")
    parser.add_argument(
        "--no-vertex",
        action="store_true",
        help="skip the wrappers in a Vertex job's environment (and their google-auth baseline)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="the wrappers in a Vertex job's environment reach storage over https",
    )
    args = parser.parse_args()

    from tests.fakegcp.fake import FakeGCP

    with tempfile.TemporaryDirectory(prefix="relaunch-runtime-cost-") as tmp:
        root = Path(tmp)
        fake = FakeGCP(root / "fakegcp")
        for key, value in fake.env().items():
            os.environ[key] = value
        with fake:
            fake.gcs.create_bucket("bench")
            clients = client_cost(fake, args.requests)
            tls = None
            if args.tls:
                from tests.fakegcp.tls import self_signed

                context, _, cadir = self_signed(root / "tls")
                tls = (fake.add_endpoint("tls", tls=context), cadir)
            vertex = not args.no_vertex
            one = phase(fake, root, 1, args.seconds, args.src, vertex, tls)
            many = phase(fake, root, args.many, args.seconds, args.src, vertex, tls)
    # the targets hold for every way the wrapper runs; the google-auth path is the baseline
    kinds = ("local", "gs") if args.no_vertex else ("local", "gs", "vertex")
    worst_pss = max(p[k]["pss"] for p in (one, many) for k in kinds)
    worst_cpu = max(p[k]["cpu_percent_max"] for p in (one, many) for k in kinds)
    emit(
        {
            "benchmark": "runtime_cost",
            "seconds": args.seconds,
            "vertex_storage_over_tls": bool(args.tls),
            "src": args.src or str(ROOT / "src"),
            "one_run": one,
            "many_runs": many,
            "store_client_per_request": clients,
            "targets": {"pss_mb": TARGET_PSS_MB, "cpu_percent": TARGET_CPU_PERCENT},
            "met": worst_pss <= TARGET_PSS_MB and worst_cpu <= TARGET_CPU_PERCENT,
        }
    )


if __name__ == "__main__":
    main()
