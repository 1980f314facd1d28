"""Docker's dockerignore semantics (moby/patternmatcher + ignorefile.ReadAll)."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaunch.errors import SpecError
from relaunch.images.dockerignore import Matcher, go_clean, read_patterns
from relaunch.images.files import context_files

from .conftest import write

# (pattern, path, excluded) — single patterns, matched against the path or a parent.
SINGLE = [
    ("**", "file", True),
    ("**", "dir/file", True),
    ("**/", "file", True),
    ("dir/**", "dir/file", True),
    ("dir/**", "dir/dir2/file", True),
    ("abc/**", "abc", False),  # '/**' needs something below
    ("**/dir", "dir", True),
    ("**/dir", "a/b/dir", True),
    ("**/dir", "dir/file", True),  # via the parent folder
    ("**/dir2/*", "dir/dir2/file", True),
    ("**/file*", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True),
    ("**file", "dir/file", True),
    ("**file", "dir/myfile", True),  # moby quirk: '**x' is a plain suffix match
    ("**/.foo", "bar.foo", False),
    ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False),  # '*' never crosses '/'
    ("a/*.txt", "a/file.txt", True),
    ("*", "ab/c", True),  # matches the parent 'ab'
    ("a*/b", "a/c/b", False),
    ("a[b-d]e", "ace", True),
    ("a[b-d]e", "aae", False),
    ("a[^b-d]e", "aze", True),
    (".*", ".foo", True),
    (".*", "foo", False),
    ("abc.def", "abcZdef", False),  # '.' is literal
    ("abc?def", "abcZdef", True),
    ("abc?def", "abc/def", False),
    ("a(b)c/def", "a(b)c/def", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "axb", False),
    ("[\\]a]", "]", True),
    ("docs", "docs/sub/README.md", True),  # a folder pattern excludes all below
    ("docs/", "docs", True),  # trailing '/' is cleaned away...
    ("docs/", "docs-old", False),
    ("/docs", "docs/x", True),  # leading '/' is the context root
    ("docs", "sub/docs", False),  # ...and patterns are anchored at the root
    ("a/../b", "b", True),  # cleaned like Go's filepath.Clean
    ("./c", "c", True),
]


@pytest.mark.parametrize(("pattern", "path", "excluded"), SINGLE)
def test_single_pattern(pattern: str, path: str, excluded: bool) -> None:
    m = Matcher(read_patterns(pattern), "t")
    assert m.excluded(path) is excluded


MULTI = [
    # exceptions re-include; the last matching pattern wins
    (["*.go", "!keep.go"], "keep.go", False),
    (["!keep.go", "*.go"], "keep.go", True),
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["docs", "!docs/README.md"], "docs/other.md", True),
    (["docs/", "!docs/README.md"], "docs/README.md", False),
    (["docs/*", "!docs/README.md"], "docs/README.md", False),
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (["**/__pycache__", "!keep/__pycache__"], "a/__pycache__/x.pyc", True),
    (["**/__pycache__", "!keep/__pycache__"], "keep/__pycache__/x.pyc", False),
    (["*", "!ARR_COC", "**/__pycache__"], "ARR_COC/m/__pycache__/x.pyc", True),
    (["*", "!ARR_COC", "**/__pycache__"], "ARR_COC/m/model.py", False),
    (["a/b", "!a"], "a/b/c", False),  # '!a' matches the parent 'a' of a/b/c
]


@pytest.mark.parametrize(("patterns", "path", "excluded"), MULTI)
def test_pattern_lists(patterns: list[str], path: str, excluded: bool) -> None:
    assert Matcher(patterns, "t").excluded(path) is excluded


def test_read_patterns_like_docker() -> None:
    text = "\ufefftest1\n/test2\n/a/file/here\n\nlastfile\n# comment\n  # not a comment\n"
    text += "! /inverted/abs/path\nfoo/ \n"
    assert read_patterns(text) == [
        "test1",
        "test2",
        "a/file/here",
        "lastfile",
        "# not a comment",  # only lines *starting* with '#' are comments
        "!inverted/abs/path",
        "foo",
    ]


@pytest.mark.parametrize("bad", ["[", "a[", "[^bc", "\\", "[]a]", "[-]", "[x-]", "[a-b-c]", "!"])
def test_bad_patterns_are_spec_errors_naming_the_file(bad: str) -> None:
    with pytest.raises(SpecError, match=r"Dockerfile\.dockerignore"):
        Matcher([bad], "Stack/x/Dockerfile.dockerignore")


def test_go_clean() -> None:
    assert go_clean("a//b/./c/..") == "a/b"
    assert go_clean("/../a") == "/a"
    assert go_clean("../a") == "../a"
    assert go_clean("") == "."
    assert go_clean("foo/") == "foo"


def test_walk_descends_into_excluded_folders_only_for_exceptions(tmp_path: Path) -> None:
    for rel in ["docs/a.md", "docs/README.md", "docs/deep/README.md", "src/x.py", "build/o.bin"]:
        write(tmp_path, rel, rel)
    ignore = Matcher(["docs", "!docs/README.md", "build/", "**/*.pyc"], "t")
    fs = context_files(tmp_path, ignore, state_dir=tmp_path / ".relaunch/images")
    files = [e.rel for e in fs.files]
    assert files == ["docs/README.md", "src/x.py"]
    assert "build" not in context_files(tmp_path, ignore, state_dir=tmp_path / "s").dirs


def test_walk_never_sends_git_or_relaunch_state(tmp_path: Path) -> None:
    write(tmp_path, ".git/HEAD", "ref")
    write(tmp_path, ".relaunch/images/stat-cache.json", "{}")
    write(tmp_path, "sub/.git", "gitdir: ../x")  # a submodule's .git file
    write(tmp_path, "app.py", "")
    fs = context_files(tmp_path, Matcher([], "t"), state_dir=tmp_path / ".relaunch" / "images")
    assert [e.rel for e in fs.files] == ["app.py"]
    with_git = context_files(
        tmp_path, Matcher([], "t"), state_dir=tmp_path / ".relaunch/images", include_git=True
    )
    assert ".git/HEAD" in [e.rel for e in with_git.files]


TREE = [
    "a.txt",
    "a.py",
    "docs/README.md",
    "docs/deep/x.md",
    "dir/file",
    "dir/dir2/file",
    "dir/dir2/file.txt",
    "abc/def/ghi",
    "x/__pycache__/m.pyc",
    "x/y/__pycache__/n.pyc",
    ".foo",
    "bar.foo",
    "myfile",
]


@pytest.mark.parametrize(
    "patterns",
    [[p] for p, _, _ in SINGLE if "\\" not in p] + [m[0] for m in MULTI],
    ids=str,
)
def test_walk_agrees_with_the_reference_matcher(tmp_path: Path, patterns: list[str]) -> None:
    """The walk (with its one-regex fast path and folder pruning) keeps exactly the files
    Matcher.excluded keeps, for every pattern list above."""
    for rel in TREE:
        write(tmp_path, rel, rel)
    m = Matcher(read_patterns("\n".join(patterns)), "t")
    walked = {e.rel for e in context_files(tmp_path, m, state_dir=tmp_path / ".relaunch/x").files}
    assert walked == {p for p in TREE if not m.excluded(p)}
