"""What one `relaunch ps` costs on a bucket, counted by the fake Cloud Storage: the
listings, one read of each run it shows, the heartbeats that exist — never a read of a
run that ended days ago, and nothing else."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from relaunch.cli.main import main
from relaunch.runs import keys, live
from relaunch.store.gcs import GCSStore
from tests.fakegcp.fake import FakeGCP

URL = "gs://runs/team"
OLD = 300  # runs that ended days ago: `ps` must not read any of them


def put(store: GCSStore, run_id: str, state: str, **extra: Any) -> None:
    body = {"run_id": run_id, "name": run_id, "queue": "q", "backend": "local", "state": state}
    store.put(keys.run_key(run_id), json.dumps({**body, "created_at": 1.0, **extra}).encode())


def seed(store: GCSStore) -> None:
    now = time.time()
    for i in range(OLD):
        put(store, f"old-{i:03d}", "SUCCEEDED", ended_at=now - 5 * 86400)
    for i, state in enumerate(["SUCCEEDED", "SUCCEEDED", "STOPPED", "FAILED", "FAILED"]):
        put(store, f"recent-{i}", state, reason="quota", ended_at=now - 60, attempt=1)
        live.ended(store, f"recent-{i}", ended_at=now - 60, entry_generation=0)
    # A readable run set aside as damaged ends FAILED and says so (agent/damaged.py).
    put(store, "set-aside", "FAILED", detail="set aside: attempt 1 is damaged", ended_at=now)
    store.put(keys.damaged_key("set-aside"), json.dumps({"why": "attempt 1 is damaged"}).encode())
    live.ended(store, "set-aside", ended_at=now, entry_generation=0)
    for i in range(4):  # running; the last one's heartbeat is its previous attempt's
        run_id = f"running-{i}"
        live.add(store, run_id, queue="q", backend="local", created_at=now)
        put(store, run_id, "RUNNING", attempt=2, step=5, total=10, created_at=now - i)
        hb = {"time": now, "attempt": 1 if i == 3 else 2, "step": 7, "total": 10}
        store.put(keys.heartbeat_key(run_id), json.dumps(hb).encode())
    live.add(store, "waiting", queue="q", backend="local", created_at=now)
    put(store, "waiting", "QUEUED")
    put(store, "broken", "RUNNING")
    store.put(keys.run_key("broken"), b'{"run_id": "bro')  # cut short
    store.put(keys.damaged_key("broken"), json.dumps({"why": "cut short"}).encode())
    live.ended(store, "broken", ended_at=now, entry_generation=0)
    store.put(keys.INDEX_KEY, b'{"version": 1}')


def test_ps_reads_only_the_runs_it_shows(
    fake_gcp: FakeGCP,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_gcp.gcs.create_bucket("runs")
    seed(GCSStore(URL))
    monkeypatch.chdir(tmp_path)  # no relaunch.toml here
    capsys.readouterr()
    before = len(fake_gcp.requests("storage"))
    main(["ps", "--json", "--store", URL])
    rows = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    requests = [(method, path) for _, method, path in fake_gcp.requests("storage")[before:]]

    shown = {*(f"recent-{i}" for i in range(5)), *(f"running-{i}" for i in range(4))}
    assert set(rows) == {*shown, "waiting", "broken", "set-aside"}
    assert rows["broken"]["state"] == "DAMAGED" and rows["broken"]["note"] == "cut short"
    assert rows["set-aside"]["state"] == "DAMAGED"
    assert rows["set-aside"]["note"] == "attempt 1 is damaged"
    assert rows["recent-3"]["state"] == "FAILED"
    assert [rows[f"running-{i}"]["progress"] for i in range(4)] == ["7/10 70%"] * 3 + ["5/10 50%"]
    assert rows["running-3"]["heartbeat_age"] is None  # a previous attempt's heartbeat
    assert "no agent serves queue 'q'" in rows["waiting"]["note"]

    assert not [p for _, p in requests if "/old-" in p], "ps read a run that ended days ago"
    assert {m for m, _ in requests} == {"GET"}  # `ps` writes nothing
    listings = sorted(p for _, p in requests if p.endswith("/o"))
    reads = [p.rsplit("/team/", 1)[1] for _, p in requests if not p.endswith("/o")]
    assert len(listings) == 3  # live/ and ended/ (together), agents/ (for "waiting")
    expected = (
        ["index.json"]
        + [keys.run_key(r) for r in [*shown, "waiting", "broken", "set-aside"]]
        + [keys.heartbeat_key(f"running-{i}") for i in range(4)]  # the 4 that exist
        # why, then when; a FAILED run not set aside (recent-3, recent-4) costs nothing
        + [keys.damaged_key(r) for r in ("broken", "set-aside")] * 2
    )
    assert sorted(reads) == sorted(expected)
