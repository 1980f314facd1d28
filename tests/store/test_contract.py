"""The ObjectStore contract, run against every kind of store (tests/conftest.py)."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from relaunch.errors import ObjectNotFound, PreconditionFailed, UserInputError
from relaunch.store import ObjectStore, open_store


def test_put_get_roundtrip_and_generations_increase(any_store: ObjectStore) -> None:
    g1 = any_store.put("runs/a/run.json", b"one")
    data, g = any_store.get("runs/a/run.json")
    assert (data, g) == (b"one", g1)
    g2 = any_store.put("runs/a/run.json", b"two")
    assert g2 > g1
    assert any_store.get("runs/a/run.json") == (b"two", g2)


def test_missing_object(any_store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        any_store.get("nope/x.json")
    assert any_store.stat("nope/x.json") is None


def test_a_folder_or_a_path_through_an_object_is_no_object(any_store: ObjectStore) -> None:
    any_store.put("runs/a/run.json", b"{}")
    for key in ("runs/a", "runs/a/run.json/x", "runs"):
        with pytest.raises(ObjectNotFound):
            any_store.get(key)
        assert any_store.stat(key) is None


def test_get_returns_every_byte_of_objects_of_any_size(any_store: ObjectStore) -> None:
    for size in (0, 1, 65_535, 65_536, 65_537, 3 * 1024 * 1024 + 7):
        payload = bytes(range(251)) * (size // 251) + bytes(range(size % 251))
        gen = any_store.put(f"blobs/{size}", payload)
        assert any_store.get(f"blobs/{size}") == (payload, gen)


def test_create_only(any_store: ObjectStore) -> None:
    any_store.put("k", b"1", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        any_store.put("k", b"2", if_generation_match=0)
    assert any_store.get("k")[0] == b"1"


def test_compare_and_swap(any_store: ObjectStore) -> None:
    g = any_store.put("k", b"1")
    g2 = any_store.put("k", b"2", if_generation_match=g)
    with pytest.raises(PreconditionFailed):
        any_store.put("k", b"3", if_generation_match=g)  # stale generation
    assert any_store.get("k") == (b"2", g2)
    with pytest.raises(PreconditionFailed):
        any_store.put("absent", b"x", if_generation_match=g2)


def test_conditional_delete(any_store: ObjectStore) -> None:
    g = any_store.put("k", b"1")
    with pytest.raises(PreconditionFailed):
        any_store.delete("k", if_generation_match=g + 1)
    any_store.delete("k", if_generation_match=g)
    assert any_store.stat("k") is None
    any_store.delete("k")  # absent and unconditional: fine
    with pytest.raises(PreconditionFailed):
        any_store.delete("k", if_generation_match=g)


def test_list_prefix_and_delimiter(any_store: ObjectStore) -> None:
    for key in ["runs/a/run.json", "runs/a/events/1.json", "runs/b/run.json", "runsx", "q/1"]:
        any_store.put(key, b"x")
    flat = [m.key for m in any_store.list("runs/").objects]
    assert flat == ["runs/a/events/1.json", "runs/a/run.json", "runs/b/run.json"]
    listing = any_store.list("runs/", delimiter="/")
    assert listing.objects == []
    assert listing.prefixes == ["runs/a/", "runs/b/"]
    assert [m.key for m in any_store.list("runs/a/", delimiter="/").objects] == ["runs/a/run.json"]
    assert [m.key for m in any_store.list("run").objects][-1] == "runsx"
    assert any_store.list("missing/").objects == []


def test_deleted_folders_disappear_from_listings(any_store: ObjectStore) -> None:
    any_store.put("runs/a/events/1.json", b"x")
    any_store.delete("runs/a/events/1.json")
    assert any_store.list("runs/", delimiter="/").prefixes == []


def test_stream_large_object(any_store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    payload = bytes(range(256)) * (40 * 1024)  # 10 MiB
    src.write_bytes(payload)
    gen = any_store.upload_file("ckpt/1/model.pt", src, if_generation_match=0)
    meta = any_store.stat("ckpt/1/model.pt")
    assert meta is not None and meta.size == len(payload) and meta.generation == gen
    out = tmp_path / "out" / "model.pt"
    assert any_store.download_file("ckpt/1/model.pt", out) == gen
    assert out.read_bytes() == payload
    with any_store.open_read("ckpt/1/model.pt") as f:
        assert f.read(256) == payload[:256]


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "../x", "a/../b", "a/./b", "sp ace", "a\\b"])
def test_bad_keys_rejected(any_store: ObjectStore, key: str) -> None:
    with pytest.raises(UserInputError):
        any_store.put(key, b"x")


def _race_increment(url: str, n: int, results: mp.Queue) -> None:  # type: ignore[type-arg]
    store = open_store(url)
    conflicts = 0
    for _ in range(n):
        while True:
            data, gen = store.get("counter")
            try:
                store.put("counter", str(int(data) + 1).encode(), if_generation_match=gen)
                break
            except PreconditionFailed:
                conflicts += 1
    results.put(conflicts)


def _race_create(url: str, worker: int, results: mp.Queue) -> None:  # type: ignore[type-arg]
    store = open_store(url)
    won = []
    for i in range(50):
        try:
            store.put(f"lease/{i}", str(worker).encode(), if_generation_match=0)
            won.append(i)
        except PreconditionFailed:
            pass
    results.put((worker, won))


def test_cas_holds_between_processes(any_store: ObjectStore) -> None:
    """Four processes increment one counter by CAS: no update is ever lost."""
    any_store.put("counter", b"0")
    ctx = mp.get_context("spawn")
    results: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [
        ctx.Process(target=_race_increment, args=(any_store.url, 25, results)) for _ in range(4)
    ]
    for p in procs:
        p.start()
    conflicts = sum(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    assert int(any_store.get("counter")[0]) == 100
    assert [p.exitcode for p in procs] == [0] * 4
    # (how many CAS writes lost their race, `conflicts`, is up to the scheduler)
    del conflicts


def test_create_only_has_one_winner_between_processes(any_store: ObjectStore) -> None:
    ctx = mp.get_context("spawn")
    results: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [ctx.Process(target=_race_create, args=(any_store.url, w, results)) for w in range(4)]
    for p in procs:
        p.start()
    outcome = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    claimed = sorted(i for won in outcome.values() for i in won)
    assert claimed == list(range(50))  # each key won exactly once
    for i in range(50):
        owner = int(any_store.get(f"lease/{i}")[0])
        assert i in outcome[owner]
