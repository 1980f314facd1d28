"""checkpoints.dir from the command line: a folder holding the user's files is refused
before anything is queued, and a run's own folder is left with its checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from relaunch.runtime.folder import MARKER

JOB = "name: dl\nbackend: local\ncommand: [python, t.py]\ncheckpoints: {dir: DIR}\n"
TRAINER = (
    "import os, pathlib\n"
    "d = pathlib.Path(os.environ['RELAUNCH_CHECKPOINT_DIR'])\n"
    "(d / 'last.pt').write_text('weights')\n"
    "print('saved last.pt')\n"
)


def _project(tmp_path: Path, folder: str) -> tuple[Path, dict[str, str]]:
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    (proj / "t.py").write_text(TRAINER)
    (proj / "a.yaml").write_text(JOB.replace("DIR", folder))
    env = {
        **os.environ,
        "RELAUNCH_STORE": str(tmp_path / "store"),
        "RELAUNCH_SCRATCH_ROOT": str(tmp_path / "scratch"),
    }
    return proj, env


def _relaunch(proj: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relaunch.cli.main", *args],
        cwd=proj, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _store_files(tmp_path: Path) -> list[str]:
    store = tmp_path / "store"
    return sorted(str(p.relative_to(store)) for p in store.rglob("*") if "runs" in p.parts)


def test_a_data_folder_is_refused_by_doctor_and_run_and_left_as_it_was(tmp_path: Path) -> None:
    """The audit's repro: `dir: data` emptied the project's data folder."""
    proj, env = _project(tmp_path, "data")
    (proj / "data" / "train.csv").write_text("precious\n")
    doctor = _relaunch(proj, env, "doctor", "a.yaml")
    assert doctor.returncode == 1
    assert "holds files relaunch did not put there (train.csv)" in doctor.stdout
    run = _relaunch(proj, env, "run", "a.yaml", "--follow")
    assert run.returncode == 2, run.stdout + run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
    assert f"checkpoints.dir {proj}/data holds files relaunch did not put there" in run.stderr
    assert (proj / "data" / "train.csv").read_text() == "precious\n"
    assert _store_files(tmp_path) == []  # nothing queued


def test_a_folder_outside_the_project_is_checked_the_same_way(tmp_path: Path) -> None:
    proj, env = _project(tmp_path, "../other")
    (tmp_path / "other" / "notes.txt").write_text("mine")
    run = _relaunch(proj, env, "run", "a.yaml", "--follow")
    assert run.returncode == 2 and "holds files relaunch did not put there (notes.txt)" in (
        run.stderr
    )
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    assert _store_files(tmp_path) == []


def test_an_empty_folder_becomes_the_runs_and_the_next_run_of_the_job_takes_it_over(
    tmp_path: Path,
) -> None:
    proj, env = _project(tmp_path, "../other")
    first = _relaunch(proj, env, "run", "a.yaml", "--follow")
    assert first.returncode == 0, first.stdout + first.stderr
    assert (tmp_path / "other" / "last.pt").read_text() == "weights"
    assert f'"run_id": "{first.stdout.split()[0]}"' in (tmp_path / "other" / MARKER).read_text()
    # that run ended, its checkpoint is in the store: the same job may run again there
    (proj / "t.py").write_text(TRAINER.replace("'weights'", "'weights 2'"))
    again = _relaunch(proj, env, "run", "a.yaml", "--follow")
    assert again.returncode == 0, again.stdout + again.stderr
    assert (tmp_path / "other" / "last.pt").read_text() == "weights 2"
    run_id = again.stdout.split()[0]
    assert f'"run_id": "{run_id}"' in (tmp_path / "other" / MARKER).read_text()
    # the attempt's scratch folder went once its log and checkpoint were in the store
    assert list((tmp_path / "scratch").iterdir()) == []
    assert (tmp_path / "scratch").stat().st_mode & 0o777 == 0o700
    # with it went the raw output; `logs --cloud` shows the shipped log instead
    cloud = _relaunch(proj, env, "logs", run_id, "--cloud")
    assert cloud.returncode == 0 and "saved last.pt" in cloud.stdout, cloud.stderr
