"""GCSStore beyond the shared contract: retries, errors, pagination, resumable uploads."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaunch.errors import PreconditionFailed, StoreError
from relaunch.store import open_store
from relaunch.store.gcs import GCSStore
from tests.fakegcp.fake import FakeGCP


@pytest.fixture
def gcs(fake_gcp: FakeGCP) -> GCSStore:
    fake_gcp.gcs.create_bucket("b")
    return GCSStore("gs://b/root", retry_initial=0.01)


def test_open_store_maps_keys_under_the_prefix(fake_gcp: FakeGCP, gcs: GCSStore) -> None:
    store = open_store("gs://b/root/")
    assert isinstance(store, GCSStore) and store.url == "gs://b/root"
    store.put("runs/a/run.json", b"x")
    assert list(fake_gcp.gcs.buckets["b"]) == ["root/runs/a/run.json"]
    assert gcs.get("runs/a/run.json")[0] == b"x"


@pytest.mark.parametrize("status", [503, 500, 429])
def test_transient_errors_are_retried(fake_gcp: FakeGCP, gcs: GCSStore, status: int) -> None:
    fault = fake_gcp.faults.fail("storage", times=3, status=status)
    gen = gcs.put("k", b"v", if_generation_match=0)
    assert fault.hits == 3
    fake_gcp.faults.fail("storage", times=2, status=status)
    assert gcs.get("k") == (b"v", gen)


def test_rate_limit_is_retried(fake_gcp: FakeGCP, gcs: GCSStore) -> None:
    fault = fake_gcp.faults.rate_limit("storage", times=2)
    gcs.put("k", b"v")
    assert fault.hits == 2


def test_create_only_whose_answer_was_lost_is_still_ours(fake_gcp: FakeGCP, gcs: GCSStore) -> None:
    """The write lands, its answer is a 503, the retry meets 412: the store knows it won."""
    fake_gcp.faults.fail("storage", method="POST", times=1, after=True)
    gen = gcs.put("lease", b"me", if_generation_match=0)
    assert gcs.get("lease") == (b"me", gen)
    with pytest.raises(PreconditionFailed):  # someone else's later attempt still loses
        gcs.put("lease", b"other", if_generation_match=0)


def test_permission_denied_names_the_role(fake_gcp: FakeGCP, gcs: GCSStore) -> None:
    fake_gcp.faults.deny("storage", "storage.objects.create")
    with pytest.raises(StoreError) as info:
        gcs.put("k", b"v")
    assert "roles/storage.objectAdmin" in str(info.value)


def test_missing_bucket_says_so(fake_gcp: FakeGCP) -> None:
    store = GCSStore("gs://no-such-bucket/x", retry_initial=0.01)
    for call in (lambda: store.get("k"), lambda: store.put("k", b"v"), lambda: store.list("")):
        with pytest.raises(StoreError, match="does not exist"):
            call()


def test_list_follows_pages(fake_gcp: FakeGCP, gcs: GCSStore) -> None:
    fake_gcp.gcs.max_page_size = 2
    keys = [f"runs/r{i}/run.json" for i in range(5)] + ["runs/top.json"]
    for key in keys:
        gcs.put(key, b"x")
    assert [m.key for m in gcs.list("runs/").objects] == sorted(keys)
    listing = gcs.list("runs/", delimiter="/")
    assert listing.prefixes == [f"runs/r{i}/" for i in range(5)]
    assert [m.key for m in listing.objects] == ["runs/top.json"]
    pages = [p for p in fake_gcp.requests("storage") if p[2].endswith("/o")]
    assert len(pages) >= 6  # 3 pages each: the store followed nextPageToken


def test_resumable_upload_survives_a_failed_chunk(fake_gcp: FakeGCP, tmp_path: Path) -> None:
    fake_gcp.gcs.create_bucket("b")
    store = GCSStore("gs://b", chunk_size=1 << 20, retry_initial=0.01)
    src = tmp_path / "ckpt.bin"
    payload = bytes(range(256)) * (36 * 1024 + 7)  # > 9 MiB: resumable, 10 chunks
    src.write_bytes(payload)
    fake_gcp.faults.fail("storage", method="PUT", path="/upload/", times=2)
    gen = store.upload_file("ckpt/model.pt", src, if_generation_match=0)
    chunks = [r for r in fake_gcp.requests("storage") if r[1] == "PUT"]
    assert len(chunks) >= 10
    out = tmp_path / "back.bin"
    assert store.download_file("ckpt/model.pt", out) == gen
    assert out.read_bytes() == payload
    with pytest.raises(PreconditionFailed):  # checked when the session starts
        store.upload_file("ckpt/model.pt", src, if_generation_match=0)


def test_reads_are_pinned_to_one_generation(fake_gcp: FakeGCP, gcs: GCSStore) -> None:
    gcs.put("k", b"old")
    reader = gcs.open_read("k")
    gcs.put("k", b"new")
    from google.api_core.exceptions import NotFound

    with pytest.raises(NotFound):  # the old generation is gone: never a mix of old and new
        reader.read()


def test_an_outage_ends_a_call_within_its_timeout(fake_gcp: FakeGCP, gcs: GCSStore) -> None:
    """An agent opens its store with call_timeout = a quarter of its lease: during an
    outage a call gives up (StoreError) in about that time instead of retrying for two
    minutes under a lease that expired long ago."""
    import time

    fake_gcp.faults.fail("storage", times=None)
    store = open_store("gs://b/root", call_timeout=2.0)
    started = time.monotonic()
    with pytest.raises(StoreError):
        store.put("runs/a/lease.json", b"x", if_generation_match=0)
    assert time.monotonic() - started < 10  # the library's default would retry for 120 s
