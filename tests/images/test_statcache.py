"""The stat cache never changes a tag: after any edit, the tags with the cache (trusted,
so that it is actually used) are the tags computed from scratch."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from relaunch.images import statcache
from relaunch.images.fingerprint import fingerprints
from relaunch.images.stack import load_stack

from .conftest import config_at, write
from .test_tag import watch_reads


def both(root: Path) -> tuple[dict[str, str], dict[str, str]]:
    stack = load_stack(config_at(root))
    cached = {n: fp.tag for n, fp in fingerprints(stack).items()}
    fresh = {n: fp.tag for n, fp in fingerprints(stack, use_cache=False).items()}
    return cached, fresh


def settle(root: Path) -> None:
    """Date every folder an hour back, as on a tree not touched for a while: an edit then
    surely moves a folder's mtime, whatever the clock's granularity."""
    hour_ago = int((time.time() - 3600) * 1e9)
    for folder, _dirs, _files in os.walk(root):
        os.utime(folder, ns=(hour_ago, hour_ago))


def _replace_file_by_folder(root: Path) -> None:
    (root / "pkg/b.py").unlink()
    write(root, "pkg/b.py/inner.py", "inside\n")


def _replace_folder_by_file(root: Path) -> None:
    for p in (root / "pkg/sub").iterdir():
        p.unlink()
    (root / "pkg/sub").rmdir()
    write(root, "pkg/sub", "now a file\n")


def _rewrite_keeping_size_and_mtime(root: Path) -> None:
    # `echo T > s.py; touch -d <old time> s.py`: only the ctime tells
    p = root / "pkg/sub/s.py"
    before = p.stat()
    p.write_text("T\n")
    os.utime(p, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = p.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )


EDITS: list[tuple[str, Callable[[Path], object]]] = [
    ("new file in a cached folder", lambda r: write(r, "pkg/c.py", "c\n")),
    ("new subfolder", lambda r: write(r, "pkg/new/deep/d.py", "d\n")),
    ("file removed", lambda r: (r / "pkg/a.py").unlink()),
    ("same size, new content", lambda r: write(r, "pkg/sub/s.py", "T\n")),
    ("executable bit", lambda r: (r / "pkg/sub/s.py").chmod(0o755)),
    ("symlink", lambda r: os.symlink("a.py", r / "pkg/link.py")),
    ("file replaced by a folder", _replace_file_by_folder),
    ("folder replaced by a file", _replace_folder_by_file),
    ("ignored file added", lambda r: write(r, "pkg/x.tmp", "ignored\n")),
    ("dockerignore changed", lambda r: write(r, ".dockerignore", "*.tmp\npkg/sub\n")),
    ("same size, mtime set back", _rewrite_keeping_size_and_mtime),
]


@pytest.mark.parametrize("edit", [e[1] for e in EDITS], ids=[e[0] for e in EDITS])
def test_cached_tag_is_the_fresh_tag_after_an_edit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: Callable[[Path], object]
) -> None:
    monkeypatch.setattr(statcache, "RACY_NS", -(10**12))  # trust every entry
    write(tmp_path, "relaunch.toml", '[images.app]\ndockerfile = "Dockerfile"\n')
    write(tmp_path, "Dockerfile", "FROM debian\nCOPY . /app\n")
    write(tmp_path, ".dockerignore", "*.tmp\n")
    write(tmp_path, "pkg/a.py", "a\n")
    write(tmp_path, "pkg/b.py", "b\n")
    write(tmp_path, "pkg/sub/s.py", "S\n")
    settle(tmp_path)
    before, fresh = both(tmp_path)
    assert before == fresh
    edit(tmp_path)
    after, fresh = both(tmp_path)
    assert after == fresh
    assert after != before or edit is EDITS[8][1]  # only the ignored file keeps the tag
    assert both(tmp_path) == (after, after)  # and again, from the cache just written


def test_files_shared_by_two_images_are_read_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        tmp_path,
        "relaunch.toml",
        '[images.a]\ndockerfile = "a.Dockerfile"\n[images.b]\ndockerfile = "b.Dockerfile"\n',
    )
    write(tmp_path, "a.Dockerfile", "FROM debian\n")
    write(tmp_path, "b.Dockerfile", "FROM ubuntu\n")
    write(tmp_path, "src/main.py", "print()\n")
    reads = watch_reads(tmp_path, monkeypatch)
    fingerprints(load_stack(config_at(tmp_path)), use_cache=False)
    assert sorted(reads) == ["a.Dockerfile", "b.Dockerfile", "relaunch.toml", "src/main.py"]


def test_a_file_vanishing_during_the_walk_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relaunch.images import _statworker

    write(tmp_path, "relaunch.toml", '[images.app]\ndockerfile = "Dockerfile"\n')
    write(tmp_path, "Dockerfile", "FROM debian\n")
    gone = write(tmp_path, "gone.py", "x\n")
    real = _statworker.hash_names

    def racing(folder: str, names: list[str], known: dict[str, tuple[object, ...]]) -> object:
        gone.unlink(missing_ok=True)
        return real(folder, names, known)

    monkeypatch.setattr(_statworker, "hash_names", racing)
    fp = fingerprints(load_stack(config_at(tmp_path)))["app"]
    assert "gone.py" not in fp.files and "Dockerfile" in fp.files


def _tree(root: Path) -> None:
    write(root, "relaunch.toml", '[images.app]\ndockerfile = "Dockerfile"\n')
    write(root, "Dockerfile", "FROM debian\n")
    for i in range(3):
        write(root, f"pkg{i}/m.py", f"{i}\n")


def test_a_settled_unchanged_folder_is_not_listed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relaunch.images.files import Walker

    monkeypatch.setattr(statcache, "RACY_NS", -(10**12))
    _tree(tmp_path)
    settle(tmp_path)
    both(tmp_path)  # writes the cache (and creates .relaunch/ in the root: a change)
    both(tmp_path)
    scans: list[str] = []
    real = Walker.scan
    monkeypatch.setattr(Walker, "scan", lambda self, p, *a: scans.append(p) or real(self, p, *a))
    stack = load_stack(config_at(tmp_path))
    fingerprints(stack)
    assert scans == []  # every folder verified by its own stat and its files' stats
    write(tmp_path, "pkg1/new.py", "n\n")
    fingerprints(stack)
    assert scans == [str(tmp_path / "pkg1")]  # only the folder that changed


def test_a_folder_changed_within_a_tick_of_the_cache_is_listed_again(tmp_path: Path) -> None:
    _tree(tmp_path)  # default RACY_NS: these folders are too fresh to be trusted
    before, _ = both(tmp_path)
    write(tmp_path, "pkg0/added.py", "a\n")
    after, fresh = both(tmp_path)
    assert after == fresh and after != before
