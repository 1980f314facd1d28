"""GCSStore beyond the shared contract: retries, errors, pagination, resumable uploads."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaunch.errors import ObjectNotFound, PreconditionFailed, StoreError
from relaunch.store import gcs_auth, open_store
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


def test_reads_are_pinned_to_one_generation(fake_gcp: FakeGCP) -> None:
    fake_gcp.gcs.create_bucket("b")
    store = GCSStore("gs://b", chunk_size=256 << 10, retry_initial=0.01)
    old = b"o" * (1 << 20)
    store.put("k", old)
    reader = store.open_read("k")
    assert reader.read(1000) == old[:1000]
    store.put("k", b"n" * (1 << 20))
    with pytest.raises(ObjectNotFound, match="replaced while read"):
        reader.read()  # the old generation is gone: never a mix of old and new


def test_a_read_is_one_request_and_a_missing_object_costs_only_its_404(
    fake_gcp: FakeGCP, gcs: GCSStore
) -> None:
    """google-cloud-storage 3.x follows a 404 with a bucket GET of its own; the store
    sends exactly one request per get, and data and generation come from that answer."""
    gen = gcs.put("runs/a/heartbeat.json", b"hb")
    before = len(fake_gcp.requests("storage"))
    assert gcs.get("runs/a/heartbeat.json") == (b"hb", gen)
    with pytest.raises(ObjectNotFound):
        gcs.get("runs/a/missing.json")
    assert gcs.stat("runs/a/missing.json") is None
    sent = fake_gcp.requests("storage")[before:]
    assert [(method, path.rsplit("/", 1)[-1]) for _, method, path in sent] == [
        ("GET", "heartbeat.json"),
        ("GET", "missing.json"),
        ("GET", "missing.json"),
    ]


def test_lost_answer_to_the_last_chunk_of_a_resumable_upload(
    fake_gcp: FakeGCP, tmp_path: Path
) -> None:
    """The last chunk commits the object and its answer is lost: the session is gone when
    the chunk is sent again, and the write id in the object says the upload was ours."""
    fake_gcp.gcs.create_bucket("b")
    store = GCSStore("gs://b", retry_initial=0.01)  # 16 MiB chunks: one PUT for 9 MiB
    src = tmp_path / "ckpt.bin"
    src.write_bytes(b"c" * (9 << 20))
    fake_gcp.faults.fail("storage", method="PUT", path="/upload/", times=1, after=True)
    gen = store.upload_file("ckpt/model.pt", src, if_generation_match=0)
    meta = store.stat("ckpt/model.pt")
    assert meta is not None and (meta.generation, meta.size) == (gen, 9 << 20)
    puts = [r for r in fake_gcp.requests("storage") if r[1] == "PUT"]
    assert len(puts) == 2  # the chunk, then again: the session was gone


def test_a_lost_race_is_not_taken_for_our_own_write(fake_gcp: FakeGCP, gcs: GCSStore) -> None:
    """A 412 on the first try is someone else's object: no extra read to find out."""
    gcs.put("lease", b"theirs", if_generation_match=0)
    before = len(fake_gcp.requests("storage"))
    with pytest.raises(PreconditionFailed):
        gcs.put("lease", b"mine", if_generation_match=0)
    assert len(fake_gcp.requests("storage")) == before + 1


def test_many_threads_share_one_store(fake_gcp: FakeGCP, gcs: GCSStore) -> None:
    """Compare-and-swap increments from 8 threads on one store: no lost update, no
    error, every thread's own objects intact (an agent runs store calls from a pool)."""
    import threading

    gcs.put("counter", b"0")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(10):
                gcs.put(f"t{n}/{i}", f"{n}-{i}".encode())
                while True:
                    data, gen = gcs.get("counter")
                    try:
                        gcs.put("counter", str(int(data) + 1).encode(), if_generation_match=gen)
                        break
                    except PreconditionFailed:
                        continue
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert errors == []
    assert gcs.get("counter")[0] == b"80"
    assert all(gcs.get(f"t{n}/{i}")[0] == f"{n}-{i}".encode() for n in range(8) for i in range(10))


def test_an_expired_token_is_refreshed_once_for_all_threads(
    fake_gcp: FakeGCP, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside an emulator requests carry Application Default Credentials; threads that
    find the token expired at once fetch one new token between them."""
    import threading

    from google.auth import credentials

    class Counting(credentials.Credentials):
        refreshes = 0

        def refresh(self, request: object) -> None:
            import time

            time.sleep(0.05)
            Counting.refreshes += 1
            self.token = f"token-{Counting.refreshes}"

    monkeypatch.setattr(gcs_auth, "credentials", lambda pool: (Counting(), None))
    monkeypatch.setattr("relaunch.gcp.endpoints.is_local_emulator", lambda url: False)
    fake_gcp.gcs.create_bucket("b")
    store = GCSStore("gs://b", retry_initial=0.01)
    store.put("k", b"v")
    assert Counting.refreshes == 1
    threads = [threading.Thread(target=store.get, args=("k",)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert Counting.refreshes == 1  # the token is still valid: no refresh per request


def test_importing_the_store_loads_no_client_library() -> None:
    import subprocess
    import sys

    code = (  # ('google' itself is a namespace package some .pth files load at start-up)
        "import sys, relaunch.store.gcs;"
        "heavy = ('google.auth', 'google.cloud.', 'google.api_core', 'urllib3', 'requests',"
        " 'pydantic');"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


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
