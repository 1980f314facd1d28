"""Added latency: every request waits, concurrent requests wait side by side, and the fake
Cloud Storage stays consistent while many clients race on it through that latency."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from relaunch.errors import PreconditionFailed
from relaunch.store.gcs import GCSStore
from tests.fakegcp.fake import FakeGCP, latency_from_env

DELAY = 0.4  # seconds: far above a loaded machine's own request time, so it is seen


def timed(call: Callable[[], requests.Response]) -> tuple[float, int]:
    started = time.monotonic()
    code = call().status_code
    return time.monotonic() - started, code


def bucket_get(fake: FakeGCP) -> Callable[[], requests.Response]:
    # A session per call: one connection each, as separate clients would have.
    return lambda: requests.Session().get(f"{fake.url}/storage/v1/b/b", timeout=30)


@pytest.mark.parametrize("fake_gcp", [{"latency_ms": DELAY * 1000}], indirect=True)
def test_every_request_waits_and_concurrent_requests_overlap(fake_gcp: FakeGCP) -> None:
    fake_gcp.gcs.create_bucket("b")
    alone, code = timed(bucket_get(fake_gcp))
    assert code == 200 and alone >= DELAY
    clients = 8
    with ThreadPoolExecutor(clients) as pool:
        started = time.monotonic()
        answers = list(pool.map(lambda _: timed(bucket_get(fake_gcp)), range(clients)))
        wall = time.monotonic() - started
    assert all(code == 200 and took >= DELAY for took, code in answers)
    # In sequence they would take clients * DELAY (3.2 s); side by side about DELAY.
    assert wall < clients * DELAY / 2, f"requests did not overlap: {wall:.2f}s"


def test_latency_can_target_one_api_and_change_while_running(fake_gcp: FakeGCP) -> None:
    fake_gcp.gcs.create_bucket("b")
    fake_gcp.set_latency(DELAY * 1000, "aiplatform")
    took, _ = timed(bucket_get(fake_gcp))
    assert took < DELAY  # storage is not delayed
    fake_gcp.set_latency(DELAY * 1000, "storage")
    took, _ = timed(bucket_get(fake_gcp))
    assert took >= DELAY
    fake_gcp.set_latency(0, "storage")
    took, _ = timed(bucket_get(fake_gcp))
    assert took < DELAY


def test_latency_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert latency_from_env("20") == (None, 20.0)
    assert latency_from_env("storage:20") == ("storage", 20.0)
    assert latency_from_env("") == (None, 0.0)
    with pytest.raises(ValueError):
        latency_from_env("storage:fast")
    monkeypatch.setenv("FAKEGCP_LATENCY_MS", f"storage:{DELAY * 1000}")
    with FakeGCP(tmp_path) as fake:
        fake.gcs.create_bucket("b")
        took, _ = timed(bucket_get(fake))
        assert took >= DELAY


def test_a_second_endpoint_serves_the_same_objects_and_says_so(fake_gcp: FakeGCP) -> None:
    fake_gcp.gcs.create_bucket("b")
    seen: list[str] = []
    fake_gcp.router.after = lambda api, req, resp: seen.append(req.via)
    other = fake_gcp.add_endpoint("runtime")
    fake_gcp.gcs.put("b", "k", b"v")
    url = "/storage/v1/b/b/o/k?alt=media"
    assert requests.get(other + url, timeout=10).content == b"v"
    assert requests.get(fake_gcp.url + url, timeout=10).content == b"v"
    assert seen == ["runtime", "main"]


@pytest.mark.parametrize("fake_gcp", [{"latency_ms": 20, "latency_api": "storage"}], indirect=True)
def test_compare_and_swap_loses_no_update_among_racing_clients(fake_gcp: FakeGCP) -> None:
    """Clients increment one counter by compare-and-swap through 20 ms of latency: with
    the requests overlapping, every increment that was acknowledged is in the result,
    and of clients racing to create one object, exactly one wins."""
    fake_gcp.gcs.create_bucket("b")
    clients, each = 6, 8
    stores = [GCSStore("gs://b/race", retry_initial=0.05) for _ in range(clients)]
    stores[0].put("counter", b"0", if_generation_match=0)
    acknowledged = []
    lock = threading.Lock()

    def bump(store: GCSStore) -> None:
        done = 0
        while done < each:
            data, gen = store.get("counter")
            try:
                store.put("counter", str(int(data) + 1).encode(), if_generation_match=gen)
            except PreconditionFailed:
                continue
            done += 1
        with lock:
            acknowledged.append(done)

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(bump, stores))
    assert int(stores[0].get("counter")[0]) == sum(acknowledged) == clients * each

    def create(store: GCSStore) -> bool:
        try:
            store.put("once", json.dumps({"by": id(store)}).encode(), if_generation_match=0)
        except PreconditionFailed:
            return False
        return True

    with ThreadPoolExecutor(clients) as pool:
        assert sorted(pool.map(create, stores)) == [False] * (clients - 1) + [True]
