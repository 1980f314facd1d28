"""`relaunch images …` as a user runs it (a subprocess): output, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import relaunch

from .conftest import make_seeds_project, write

SRC = str(Path(relaunch.__file__).resolve().parents[1])


Done = subprocess.CompletedProcess[str]


def run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Done:
    return subprocess.run(
        [sys.executable, "-m", "relaunch.cli.main", "images", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC, "COLUMNS": "200", **(env or {})},
        timeout=120,
    )


def test_plan_json_and_table(seeds: Path) -> None:
    done = run(seeds, "plan", "--offline", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["image"] for r in rows] == [
        "arr-pytorch-base",
        "arr-ml-stack",
        "arr-trainer",
        "arr-vertex-launcher",
    ]
    assert {r["state"] for r in rows} == {"not built"}  # --offline: no registry asked
    table = run(seeds, "plan", "--offline")
    assert table.returncode == 0
    for r in rows:
        assert r["tag"] in table.stdout
    assert "not built" in table.stdout and "not in registry" not in table.stdout


def test_list_shows_full_uris(seeds: Path) -> None:
    done = run(seeds, "list", "--json")
    assert done.returncode == 0, done.stderr
    uris = {r["image"]: r["uri"] for r in json.loads(done.stdout)}
    assert uris["arr-trainer"].startswith(
        "us-central1-docker.pkg.dev/proj/arr-coc-registry/arr-trainer:"
    )
    table = run(seeds, "list")
    assert uris["arr-trainer"] in table.stdout


def test_build_dry_run_lists_the_order(seeds: Path) -> None:
    done = run(seeds, "build", "arr-trainer", "--dry-run", "--offline")
    assert done.returncode == 0, done.stderr
    order = [line.split()[1].split(":")[0] for line in done.stderr.splitlines()]
    assert order == ["arr-pytorch-base", "arr-ml-stack", "arr-trainer"]


def test_build_with_fake_docker_then_nothing_to_do(seeds: Path, fake_docker: Path) -> None:
    done = run(seeds, "build", "arr-vertex-launcher", "--builder", "docker", "--offline")
    assert done.returncode == 0, done.stderr
    assert "built" in done.stderr and fake_docker.exists()
    again = run(seeds, "build", "arr-vertex-launcher", "--builder", "docker", "--offline")
    assert "up to date" in again.stderr


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_unknown_image_is_exit_2_one_line(seeds: Path) -> None:
    line = one_line_error(run(seeds, "plan", "arr-traner", "--offline"))
    assert "'arr-traner' is not an image of the stack" in line and "arr-trainer" in line


def test_cycle_is_exit_2_one_line(tmp_path: Path) -> None:
    write(tmp_path, "a/Dockerfile", "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    write(tmp_path, "b/Dockerfile", "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    write(
        tmp_path,
        "relaunch.toml",
        '[images.a]\ndockerfile = "a/Dockerfile"\nparent = "b"\n'
        '[images.b]\ndockerfile = "b/Dockerfile"\nparent = "a"\n',
    )
    assert "parent cycle a → b → a" in one_line_error(run(tmp_path, "list"))


def test_missing_dockerfile_and_empty_glob_are_exit_2(seeds: Path) -> None:
    (seeds / "Stack/arr-trainer/.image-manifest").write_text("nothing/here/*.py\n")
    line = one_line_error(run(seeds, "plan", "--offline"))
    assert "Stack/arr-trainer/.image-manifest" in line and "matches no file" in line
    write(seeds, "relaunch.toml", '[images.x]\ndockerfile = "nope/Dockerfile"\n')
    assert "Dockerfile not found: nope/Dockerfile" in one_line_error(run(seeds, "list"))


def test_bad_flag_and_bad_toml_are_exit_2(seeds: Path) -> None:
    bad = run(seeds, "build", "--builder", "podman")
    assert bad.returncode == 2
    write(seeds, "relaunch.toml", "[image_stack]\ntag_length = 3\n")
    assert "image_stack.tag_length" in one_line_error(run(seeds, "list"))


def test_require_clean_refusal_is_exit_2(seeds: Path, fake_docker: Path) -> None:
    (seeds / "ARR_COC/model.py").write_text("uncommitted\n")
    line = one_line_error(
        run(seeds, "build", "arr-trainer", "--builder", "docker", "--offline", "--require-clean")
    )
    assert "ARR_COC/model.py is not committed" in line
    assert not fake_docker.exists()


def test_json_plan_and_builder_modules_import_neither_google_nor_rich(seeds: Path) -> None:
    code = (
        "import sys; before = set(sys.modules)\n"  # site .pth files may pre-load namespaces
        "from relaunch.cli.main import main\n"
        "try:\n    main(['images', 'plan', '--offline', '--json'])\nexcept SystemExit: pass\n"
        "import relaunch.images.build, relaunch.images.builders.cloudbuild\n"
        "new = set(sys.modules) - before\n"
        "bad = sorted(m for m in new if m.startswith(('google', 'rich')))\n"
        "print(bad)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=seeds,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        timeout=120,
    )
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stderr


def test_plan_warns_about_discovered_images_without_a_manifest(seeds: Path) -> None:
    done = run(seeds, "plan", "--offline", "--json")
    assert done.returncode == 0, done.stderr
    json.loads(done.stdout)  # the warnings stay off stdout
    warned = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 3 and all("list its inputs in Stack/" in w for w in warned)
    assert any("Stack/arr-pytorch-base/.image-manifest" in w for w in warned)
    assert not any("arr-trainer" in w for w in warned)  # it has one


def test_a_project_without_images_is_told_how_to_declare_one(tmp_path: Path) -> None:
    (tmp_path / "relaunch.toml").write_text('[store]\nurl = "store"\n')
    done = run(tmp_path, "plan", "--offline")
    assert done.returncode == 0, done.stderr
    assert "declare [images.NAME] in relaunch.toml or add Stack/<name>/" in done.stdout


def test_a_plan_with_no_registry_answer_is_printed_and_fails(tmp_path: Path) -> None:
    """Every state "unknown": the plan is still shown, but exit 1 with one error line, so
    a script does not read it as "nothing to build"."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed
    root = make_seeds_project(tmp_path / "proj")
    (root / "relaunch.toml").write_text(f'[image_stack]\nrepository = "{host}/relaunch"\n')
    table = run(root, "plan")
    assert table.returncode == 1, table.stderr
    assert "arr-trainer" in table.stdout and "unknown" in table.stdout
    errors = [line for line in table.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and table.stderr.rstrip().endswith(errors[0])
    assert "the registry could not be asked" in errors[0] and f"listens on {host}" in errors[0]
    as_json = run(root, "plan", "--json")
    assert as_json.returncode == 1
    assert {r["state"] for r in json.loads(as_json.stdout)} == {"unknown"}
    assert as_json.stderr.rstrip().splitlines()[-1] == errors[0]
    assert (root / ".relaunch/.gitignore").exists()  # its caches stay out of `git add -A`


def test_the_seeds_example_plans_without_a_warning(tmp_path: Path) -> None:
    """examples/seeds-stack as its README sets it up (busybox copied in): no warning."""
    from .busybox_stack import EXAMPLE

    root = tmp_path / "seeds-stack"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".relaunch", "busybox"))
    for name in ("arr-pytorch-base", "arr-vertex-launcher"):
        (root / "Stack" / name / "busybox").write_bytes(b"\x7fELF stand-in for busybox\n")
    done = run(root, "plan", "--offline", env={"HF_TOKEN": "anything"})
    assert done.returncode == 0, done.stderr
    assert "arr-vertex-launcher" in done.stdout
    assert "warning" not in done.stderr, done.stderr
