"""Without the `gcp` extra: a one-line error that says what to install, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from relaunch.backends import registry
from relaunch.errors import MissingDependency, missing_dependency

SRC = str(Path(__file__).resolve().parents[2] / "src")

# Run relaunch's CLI as on a machine where `pip install relaunch` left out the extra.
WITHOUT_GOOGLE = """
import sys
ROOTS = ("google", "google_crc32c", "grpc", "proto")
for name in [m for m in sys.modules if m.split(".")[0] in ROOTS]:
    del sys.modules[name]  # namespace packages a site .pth file may have loaded

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ROOTS:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
from relaunch.cli.main import main
main(sys.argv[1:])
"""


def relaunch_without_google(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_GOOGLE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        timeout=120,
    )


def test_a_vertex_job_says_to_install_the_gcp_extra_and_queues_nothing(tmp_path: Path) -> None:
    (tmp_path / "relaunch.toml").write_text(
        '[store]\nurl = "store"\n[gcp]\nproject = "p"\nregion = "us-central1"\n'
    )
    (tmp_path / "job.yaml").write_text(
        "name: v\nbackend: vertex\nimage: us-docker.pkg.dev/p/r/i:1\ncommand: [python, t.py]\n"
        "resources: {machine_type: n1-standard-4}\n"
    )
    done = relaunch_without_google("run", "job.yaml", "--detach", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "error: the Google Cloud client libraries are not installed "
        "(no module 'google.cloud.aiplatform_v1') — pip install 'relaunch[gcp]' where relaunch runs"
    ]
    store = tmp_path / "store"
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))


def test_a_bucket_store_says_to_install_the_gcp_extra(tmp_path: Path) -> None:
    (tmp_path / "relaunch.toml").write_text('[store]\nurl = "gs://bucket/runs"\n')
    done = relaunch_without_google("ps", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: the Google Cloud client libraries are not installed (no module")
    assert line.endswith("pip install 'relaunch[gcp]' where relaunch runs")


def test_other_missing_modules_are_not_mistaken_for_the_extra() -> None:
    assert missing_dependency(ModuleNotFoundError(name="numpy")) is None
    assert missing_dependency(ModuleNotFoundError(name="googlex")) is None
    error = missing_dependency(ModuleNotFoundError(name="google.auth"))
    assert isinstance(error, MissingDependency) and "relaunch[gcp]" in str(error)


def test_the_registry_finds_a_missing_backend_library_without_importing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry, "_missing", {})
    monkeypatch.setitem(registry.REQUIRES, "vertex", "relaunch_no_such_module.sub")
    error = registry.missing("vertex")
    assert isinstance(error, MissingDependency) and "relaunch_no_such_module" in str(error)
    assert registry.missing("local") is None
    monkeypatch.setattr(registry, "_instances", {})
    with pytest.raises(MissingDependency):
        registry.get_backend("vertex")
