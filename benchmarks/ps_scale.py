"""`relaunch ps` over a store with a long history: the live-run index at work.

A store of 10,000 runs that ended days ago, 100 that ended in the last day and 50
running (heartbeats, live entries), as agents leave them (``runs/live.py``):

- local store: `ps` (default view) from a project whose relaunch.toml (an image stack,
  GCE settings) the quick check vouches for (``spec/vouch.py``: no pydantic), against —
  the baseline, in the same run — `ps` from a project whose relaunch.toml goes through
  the config's models, as every `ps` did before; `ps --all`; `ps` on the same store without
  ``index.json`` (how it listed before the index: every record read); `python -c pass`
  for the interpreter's own start-up. The one-time index build of that store (what the
  first agent of a new version does) is timed too.
- gs:// store on the fake Cloud Storage with 20 ms added to every request: `ps` over
  the same population and the requests one `ps` makes; in process, the default view's
  reads as `ps` makes them (two rounds: listings together, then one pool of 32) against
  the schedule it had before (index, live/, ended/ one after another, then the records
  8 at a time, then the heartbeats 8 at a time); `ps --all` over 1,000 runs (950 ended,
  50 running) against reading those 1,000 records one after another.

Targets: `ps` ≤ 0.3 s local, ≤ 1.5 s on gs:// with 20 ms.

    python benchmarks/ps_scale.py [--runs 10] [--ended 10000] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from _common import emit, relaunch_argv, summary, time_command

from relaunch.runs import keys, live
from relaunch.runs.records import RunRecord
from relaunch.spec.loader import parse_job
from relaunch.states import Reason, RunState
from relaunch.store import LocalStore
from relaunch.store.base import dump_json

DAY = 86400.0
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def population(ended: int, recent: int, running: int) -> dict[str, bytes]:
    """Every object of the store, by key: records, heartbeats, live and ended entries,
    and ``index.json`` — as agents leave them."""
    spec = parse_job("name: bench\ncommand: [python, train.py, --epochs, '10']\n", "bench")
    template = json.loads(
        RunRecord(
            run_id="bench-0", name="bench", queue="default", backend="local", spec=spec
        ).model_dump_json(exclude_none=True)
    )
    rng = random.Random(0)
    now = time.time()
    out: dict[str, bytes] = {}
    for i in range(ended + recent + running):
        run_id = f"bench-{i:05d}"
        rec = dict(template, run_id=run_id, name=f"bench-{i % 37}", where="host-a", total=5000)
        rec.update(attempt=rng.randint(1, 3), recoveries=rng.randint(0, 2))
        rec["step"] = rng.randint(0, 5000)
        if i < ended + recent:
            ago = rng.uniform(2 * DAY, 60 * DAY) if i < ended else rng.uniform(0, DAY * 0.9)
            rec["created_at"] = now - ago - 3600
            rec["ended_at"] = now - ago
            state = rng.choice([RunState.SUCCEEDED, RunState.FAILED, RunState.STOPPED])
            reason = Reason.SUCCEEDED if state is RunState.SUCCEEDED else Reason.QUOTA
            rec.update(state=state.value, reason=reason.value)
            if i >= ended:
                out[keys.ended_key(run_id)] = dump_json({"ended_at": rec["ended_at"]})
        else:
            rec.update(state=RunState.RUNNING.value, created_at=now - rng.uniform(0, 3600))
            hb = {"time": now, "attempt": rec["attempt"], "step": rec["step"], "total": 5000}
            out[keys.heartbeat_key(run_id)] = dump_json(hb)
            entry = {"queue": "default", "backend": "local", "created_at": rec["created_at"]}
            out[keys.live_key(run_id)] = dump_json(entry)
        out[keys.run_key(run_id)] = json.dumps(rec).encode()
    out[keys.INDEX_KEY] = dump_json({"version": 1, "built_at": now, "by": "bench"})
    return out


def project(folder: Path, *, quick: bool) -> Path:
    """A project folder with the seeds' stack example's relaunch.toml plus the GCE
    example's sections (its store is overridden by ``RELAUNCH_STORE``). Unless ``quick``,
    ``max_jobs`` is written ``4.0``: a value the models accept (an integer written as a
    float) and the quick check leaves to them — `ps`'s start-up as it was for everyone."""
    folder.mkdir(parents=True)
    text = (EXAMPLES / "seeds-stack" / "relaunch.toml").read_text() + "\n"
    text += (EXAMPLES / "gce" / "relaunch.toml").read_text()
    if not quick:
        text = text.replace("max_jobs = 4\n", "max_jobs = 4.0\n")
    (folder / "relaunch.toml").write_text(text)
    return folder


def wall_command(argv: list[str], runs: int, env: dict[str, str], cwd: Path) -> dict[str, float]:
    """Wall time of a command run in ``cwd`` over ``runs`` runs (after one warm-up)."""
    import subprocess

    subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
        samples.append(time.perf_counter() - started)
    return summary(samples)


def cpu_command(
    argv: list[str], runs: int, env: dict[str, str], cwd: Path | None = None
) -> dict[str, float]:
    """CPU seconds (user + system) of a command over ``runs`` runs: unlike wall time, it
    does not grow with what else the machine runs."""
    import resource
    import subprocess

    samples = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        samples.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return summary(samples)


def rows(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> int:
    import subprocess

    out = subprocess.run([*argv, "--json"], env=env, cwd=cwd, capture_output=True, check=True)
    return len(json.loads(out.stdout))


def local(args: argparse.Namespace, cli: list[str], tmp: Path) -> dict[str, object]:
    store = LocalStore(tmp / "store")
    objects = population(args.ended, args.recent, args.running)
    for key, data in objects.items():
        if key != keys.INDEX_KEY and not (key.startswith(keys.LIVE) and key.endswith("/run")):
            store.put(key, data)
    # The index as the first agent of this version builds it over that history (as an
    # older relaunch left it: no entries, no index.json).
    started = time.perf_counter()
    live_runs = live.build_index(store, "bench")
    build_s = time.perf_counter() - started
    env = {**os.environ, "RELAUNCH_STORE": store.url, "COLUMNS": "200"}
    quick, models = project(tmp / "quick", quick=True), project(tmp / "models", quick=False)
    ps, ps_all = [*cli, "ps"], [*cli, "ps", "--all"]
    out: dict[str, object] = {
        "runs": len([k for k in objects if k.endswith("/run.json")]),
        "index_build_s": round(build_s, 3),
        "index_build_indexed_runs": live_runs,
        "ps_rows": rows(ps, env, quick),
        "ps_all_rows": rows(ps_all, env, quick),
        "ps_s": wall_command(ps, args.runs, env, quick),
        "ps_cpu_s": cpu_command(ps, args.runs, env, quick),
        "baseline_ps_config_through_models_s": wall_command(ps, args.runs, env, models),
        "baseline_ps_config_through_models_cpu_s": cpu_command(ps, args.runs, env, models),
        "ps_all_s": wall_command(ps_all, max(3, args.runs // 3), env, quick),
        "ps_all_cpu_s": cpu_command(ps_all, max(3, args.runs // 3), env, quick),
    }
    out["in_process_cpu_s"] = in_process(store)
    out["fresh_agent_adoption_scan"] = fresh_agent(store)
    index = store.root / keys.INDEX_KEY
    index.rename(tmp / "index.json")  # the same store as an older relaunch left it
    out["baseline_ps_without_index_s"] = wall_command(ps, max(3, args.runs // 3), env, quick)
    out["baseline_ps_without_index_cpu_s"] = cpu_command(ps, max(3, args.runs // 3), env, quick)
    out["baseline_ps_without_index_rows"] = rows(ps, env, quick)
    (tmp / "index.json").rename(index)
    return out


def in_process(store: LocalStore) -> dict[str, object]:
    """The listing's own work, without the CLI's start-up: the default view's reads
    (records and heartbeats) from the index, against reading every record."""
    from relaunch.runs.summary import run_summaries, run_view

    def cpu(fn: Callable[[], object]) -> float:
        started = time.process_time()
        fn()
        return round(time.process_time() - started, 4)

    view = lambda: run_view(store, recent=live.ENDED_FOR)  # noqa: E731
    every = lambda: run_summaries(store)  # noqa: E731
    return {
        "default_view": summary([cpu(view) for _ in range(5)]),
        "baseline_every_record": summary([cpu(every) for _ in range(2)]),
    }


def fresh_agent(store: LocalStore) -> dict[str, object]:
    """A new agent's first adoption scan (its 50 runs are owned by a live agent)."""
    from relaunch.agent.loop import Agent

    running = live.live_ids(store)
    other = {"id": "other", "expires_at": time.time() + 60, "runs": running}
    store.put(keys.agent_key("other"), dump_json(other))
    gets: list[str] = []
    real_get = store.get

    def counted(key: str) -> tuple[bytes, int]:
        gets.append(key)
        return real_get(key)

    store.get = counted  # type: ignore[method-assign]
    try:
        agent = Agent(store, log=lambda _m: None)
        started = time.process_time()
        agent._adopt()
        cpu = time.process_time() - started
    finally:
        del store.get
        store.delete(keys.agent_key("other"))
    return {"cpu_s": round(cpu, 4), "gets": len(gets), "run_records_read": sum(
        k.endswith("/run.json") for k in gets)}  # fmt: skip


def with_latency(fake: object, ms: float) -> None:
    """``ms`` added to every request of the fake cloud (its own knob when it has one)."""
    setter = getattr(fake, "set_latency", None)
    if setter is not None:
        setter(ms)
        return

    def before(_api: str, _req: object) -> None:
        time.sleep(ms / 1000)  # in the request's own thread, before the route runs

    fake.router.before = before if ms else None  # type: ignore[attr-defined]


def bucket(args: argparse.Namespace, cli: list[str], tmp: Path) -> dict[str, object]:
    from tests.fakegcp.fake import FakeGCP

    with FakeGCP(tmp / "fakegcp") as fake:
        fake.gcs.create_bucket("runs")
        for key, data in population(args.ended, args.recent, args.running).items():
            fake.gcs.put("runs", f"history/{key}", data)
        small = population(1000 - args.running, 0, args.running)
        for key, data in small.items():
            fake.gcs.put("runs", f"small/{key}", data)
        env = {**os.environ, **fake.env(), "COLUMNS": "200"}
        env["DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA"] = "true"
        history = {**env, "RELAUNCH_STORE": "gs://runs/history"}
        small_env = {**env, "RELAUNCH_STORE": "gs://runs/small"}
        ps, ps_all = [*cli, "ps"], [*cli, "ps", "--all"]
        quick = project(tmp / "gs-project", quick=True)
        out: dict[str, object] = {"ps_rows": rows(ps, history, quick)}
        out["ps_requests"] = requests_of(fake, ps, history, quick)
        with_latency(fake, args.latency_ms)
        out["latency_ms"] = args.latency_ms
        out["ps_s"] = wall_command(ps, args.runs, history, quick)
        out["ps_cpu_s"] = cpu_command(ps, args.runs, history, quick)
        out["in_process_default_view"] = schedules(history, args.runs)
        out["ps_all_1000_runs_s"] = wall_command(ps_all, 3, small_env, quick)
        out["baseline_serial_reads_1000_records_s"] = serial_reads(fake, small_env)
        with_latency(fake, 0)
        return out


def requests_of(fake: Any, argv: list[str], env: dict[str, str], cwd: Path) -> dict[str, int]:
    """The Cloud Storage requests one run of ``argv`` makes, by kind."""
    import subprocess

    before = len(fake.requests("storage"))
    subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
    made = [path for _api, _method, path in fake.requests("storage")[before:]]
    listings = sum(path.endswith("/o") for path in made)
    return {"total": len(made), "listings": listings, "object_reads": len(made) - listings}


@contextmanager
def environ(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def schedules(env: dict[str, str], runs: int) -> dict[str, object]:
    """The default view's reads in process (no CLI start-up): as `ps` makes them, and —
    the baseline — in the order it made them before (see the module's docstring)."""
    from concurrent.futures import ThreadPoolExecutor

    from relaunch.runs import summary as listing
    from relaunch.store.gcs import GCSStore

    def before(store: GCSStore) -> None:
        if not live.index_ready(store):
            raise SystemExit("the benchmark's store has no index")
        ids = sorted(set(live.live_ids(store)) | set(live.ended_ids(store)))
        with ThreadPoolExecutor(max_workers=8) as pool:
            found = list(pool.map(lambda run_id: listing._summary(store, run_id), ids))
            active = [r.run_id for r in found if r is not None and not r.terminal]
            list(pool.map(lambda run_id: listing._heartbeat(store, run_id), active))

    def now(store: GCSStore) -> None:
        listing.run_view(store, recent=live.ENDED_FOR)

    out: dict[str, object] = {}
    with environ(env):
        store = GCSStore(env["RELAUNCH_STORE"])
        now(store)  # connections opened, as a CLI's first round opens them
        for name, view in (("now_s", now), ("baseline_before_s", before)):
            samples = []
            for _ in range(runs):
                started = time.perf_counter()
                view(store)
                samples.append(time.perf_counter() - started)
            out[name] = summary(samples)
    return out


def serial_reads(fake: object, env: dict[str, str]) -> dict[str, float]:
    """Reading the 1,000 records one after another, in process (no CLI start-up)."""
    with environ(env):
        from relaunch.store.gcs import GCSStore

        store = GCSStore("gs://runs/small")
        prefixes = store.list("runs/", delimiter="/").prefixes
        read: Callable[[str], object] = lambda p: store.get(p + "run.json")  # noqa: E731
        started = time.perf_counter()
        for p in prefixes:
            read(p)
        return summary([time.perf_counter() - started])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10, help="timed runs of each command")
    parser.add_argument("--ended", type=int, default=10000, help="runs that ended days ago")
    parser.add_argument("--recent", type=int, default=100, help="runs ended in the last day")
    parser.add_argument("--running", type=int, default=50, help="running runs")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--skip-gcs", action="store_true")
    args = parser.parse_args()
    cli = relaunch_argv()
    with tempfile.TemporaryDirectory() as tmp:
        result: dict[str, object] = {
            "benchmark": "ps_scale",
            "command": cli,
            "baseline_python_pass_s": time_command([sys.executable, "-c", "pass"], args.runs),
            # set: relaunch's own modules are compiled at every start (no .pyc written)
            "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE"),
            "local": local(args, cli, Path(tmp)),
        }
        if not args.skip_gcs:
            result["gcs"] = bucket(args, cli, Path(tmp))
    loc = result["local"]
    met = {"ps_local_le_0.3s": loc["ps_s"]["p50"] <= 0.3}  # type: ignore[index]
    if "gcs" in result:
        met["ps_gcs_le_1.5s"] = result["gcs"]["ps_s"]["p50"] <= 1.5  # type: ignore[index]
    result["cpu_baseline_python_pass_s"] = cpu_command(
        [sys.executable, "-c", "pass"], args.runs, dict(os.environ)
    )
    result["met"] = met
    emit(result)


if __name__ == "__main__":
    main()
