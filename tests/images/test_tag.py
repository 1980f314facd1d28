"""The tag changes exactly when what the image is made of changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from relaunch.images import _statworker, pool, statcache
from relaunch.images.fingerprint import fingerprints
from relaunch.images.stack import load_stack

from .conftest import config_at, write


def tags(root: Path) -> dict[str, str]:
    return {n: fp.tag for n, fp in fingerprints(load_stack(config_at(root))).items()}


def test_tags_are_stable_and_default_to_12_hex(seeds: Path) -> None:
    first = tags(seeds)
    assert first == tags(seeds)
    assert all(len(t) == 12 and int(t, 16) >= 0 for t in first.values())
    assert len(set(first.values())) == 4


def test_tag_length_is_configurable(seeds: Path) -> None:
    write(seeds, "relaunch.toml", "[image_stack]\ntag_length = 7\n")
    assert {len(t) for t in tags(seeds).values()} == {7}


def test_input_content_change_changes_the_image_and_its_children_only(seeds: Path) -> None:
    before = tags(seeds)
    (seeds / "ARR_COC/model.py").write_text("class Model: pass  # edited, not committed\n")
    after = tags(seeds)
    assert after["arr-trainer"] != before["arr-trainer"]
    for name in ("arr-pytorch-base", "arr-ml-stack", "arr-vertex-launcher"):
        assert after[name] == before[name]


def test_touch_and_files_outside_the_inputs_do_not_change_the_tag(seeds: Path) -> None:
    before = tags(seeds)
    model = seeds / "ARR_COC/model.py"
    os.utime(model, ns=(model.stat().st_atime_ns, model.stat().st_mtime_ns + 5_000_000_000))
    (seeds / "CLI/cli.py").write_text("changed\n")  # not in trainer's .image-manifest
    (seeds / "ARR_COC/README.md").write_text("not a .py\n")  # not matched by ARR_COC/**/*.py
    write(seeds, "notes/new.txt", "new file outside every context\n")
    after = tags(seeds)
    assert after["arr-trainer"] == before["arr-trainer"]
    assert after["arr-vertex-launcher"] == before["arr-vertex-launcher"]


def test_new_input_file_changes_the_tag(seeds: Path) -> None:
    before = tags(seeds)
    write(seeds, "ARR_COC/Training/extra.py", "x = 1\n")
    assert tags(seeds)["arr-trainer"] != before["arr-trainer"]


def test_dockerfile_change_propagates_to_every_descendant(seeds: Path) -> None:
    before = tags(seeds)
    df = seeds / "Stack/arr-pytorch-base/Dockerfile"
    df.write_text(df.read_text() + "RUN echo cuda 12.6\n")
    after = tags(seeds)
    for name in ("arr-pytorch-base", "arr-ml-stack", "arr-trainer"):
        assert after[name] != before[name], name
    assert after["arr-vertex-launcher"] == before["arr-vertex-launcher"]


def test_build_arg_and_parent_change_the_tag(tmp_path: Path) -> None:
    write(tmp_path, "base/Dockerfile", "FROM debian\n")
    write(tmp_path, "app/Dockerfile", "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    write(tmp_path, "app/main.py", "print()\n")
    toml = (
        '[images.base]\ndockerfile = "base/Dockerfile"\ncontext = "base"\n'
        '[images.app]\ndockerfile = "app/Dockerfile"\ncontext = "app"\nparent = "base"\n'
    )
    write(tmp_path, "relaunch.toml", toml)
    t0 = tags(tmp_path)
    write(tmp_path, "relaunch.toml", toml + 'args = { PY = "3.11" }\n')
    t1 = tags(tmp_path)
    assert t1["app"] != t0["app"] and t1["base"] == t0["base"]
    write(tmp_path, "relaunch.toml", toml + 'args = { PY = "3.12" }\n')
    t2 = tags(tmp_path)
    assert t2["app"] != t1["app"]
    write(tmp_path, "base/extra.sh", "echo\n")  # base's context: base changes, so app does
    t3 = tags(tmp_path)
    assert t3["base"] != t2["base"] and t3["app"] != t2["app"]


def test_executable_bit_counts_but_times_and_owners_do_not(tmp_path: Path) -> None:
    write(tmp_path, "Dockerfile", "FROM debian\nCOPY run.sh /\n")
    script = write(tmp_path, "run.sh", "echo\n")
    write(tmp_path, "relaunch.toml", '[images.app]\ndockerfile = "Dockerfile"\n')
    before = tags(tmp_path)["app"]
    script.chmod(0o755)
    assert tags(tmp_path)["app"] != before


def test_stat_cache_skips_reading_unchanged_files(
    seeds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = watch_reads(seeds, monkeypatch)
    monkeypatch.setattr(statcache, "RACY_NS", 0)  # files here are younger than a second
    first = tags(seeds)
    assert reads, "a cold run reads the files"
    reads.clear()
    assert tags(seeds) == first
    assert reads == []
    model = seeds / "ARR_COC/model.py"
    model.write_text("class Model: changed = True\n")
    changed = tags(seeds)
    assert reads == ["ARR_COC/model.py"]
    assert changed["arr-trainer"] != first["arr-trainer"]
    cache = seeds / ".relaunch/images/stat-cache"
    assert cache.is_file() and not list(cache.parent.glob(".stat-cache-*"))


def test_racy_entries_are_reread(seeds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file modified within a second of the cache write may share its mtime with a
    later edit, so it is not trusted from the cache."""
    reads = watch_reads(seeds, monkeypatch)
    tags(seeds)
    reads.clear()
    tags(seeds)
    assert "ARR_COC/model.py" in reads


def test_damaged_stat_cache_is_ignored(seeds: Path) -> None:
    first = tags(seeds)
    (seeds / ".relaunch/images/stat-cache").write_bytes(b"\x00garbage")
    assert tags(seeds) == first


def test_worker_processes_hash_like_the_caller(
    seeds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same digests, cold and warm, whether worker processes share the work or not."""
    from relaunch.images.fingerprint import image_view
    from relaunch.images.snapshot import hash_views
    from relaunch.images.statcache import StatCache

    stack = load_stack(config_at(seeds))
    views = [image_view(stack, stack.images[n]) for n in stack.order]

    def digests(cache: StatCache | None, workers: int) -> list[dict[str, str]]:
        with pool.TaskPool(workers) as tasks:
            return [dict(d) for d in hash_views(views, cache, tasks)]

    alone = digests(None, workers=0)
    monkeypatch.setattr(pool, "_SPAWN_COST", 1)
    monkeypatch.setattr(pool, "_BATCH_COST", 8)  # many small batches: interleaving
    spawned: list[object] = []
    real_worker = pool._Worker
    monkeypatch.setattr(pool, "_Worker", lambda: spawned.append(1) or real_worker())
    cache = StatCache(seeds / "cache")
    assert digests(cache, workers=2) == alone
    assert len(spawned) == 2
    cache.save()
    model = seeds / "ARR_COC/model.py"
    model.write_text("class Model: edited = 1\n")
    warm = digests(StatCache(seeds / "cache"), workers=2)
    assert warm == digests(None, workers=0)
    assert warm != alone
    assert len({kd for d in alone for kd in d.values()}) > 5


def watch_reads(root: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files read (hashed), as paths relative to ``root``."""
    reads: list[str] = []
    real = _statworker.digest

    def digest(path: str) -> str:
        reads.append(Path(path).relative_to(root).as_posix())
        return real(path)

    monkeypatch.setattr(_statworker, "digest", digest)
    return reads


def test_the_worker_starts_without_typing_or_re() -> None:
    """A worker's start-up is on the warm plan's critical path: typing alone (it
    imports re) made its first reply ~9 ms later."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-I", "-S", "-X", "importtime", _statworker.__file__],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()}
    assert "os" in imported  # the listing is what it seems
    assert not imported & {"typing", "re", "hashlib"}


def test_a_worker_that_dies_is_a_one_line_error_with_its_last_words() -> None:
    from relaunch.errors import SpecError

    with pool.TaskPool(1) as tasks:
        tasks.expect(pool._SPAWN_COST)
        tasks.submit(("h", "/nonexistent"), 1, lambda result: None)  # too few arguments
        with pytest.raises(SpecError, match=r"image hashing worker failed: TypeError: ") as e:
            tasks.drain()
    assert "\n" not in str(e.value)
