"""The note `ps` and `status` show for a run: it says what is true of the run now, and
of its backend."""

from __future__ import annotations

from relaunch.runs.records import RunRecord
from relaunch.runs.repo import RunRepo
from relaunch.spec.job import JobSpec
from relaunch.states import Reason, RunState
from relaunch.store import LocalStore
from tests.cli.harness import Project

ENDED_WITHOUT_RESULT = (
    "the attempt ended without a result (killed from outside relaunch, or its machine died)"
)


def _record(project: Project, backend: str, state: RunState, attempt: int) -> str:
    run = RunRecord(
        run_id="r-1",
        name="t",
        queue="default",
        backend=backend,
        spec=JobSpec(name="t", command=["true"]),
        state=state,
        attempt=attempt,
        decided=1,
        recoveries=1,
    )
    run.with_note(Reason.TRANSIENT, ENDED_WITHOUT_RESULT)
    RunRepo(LocalStore(project.root / "store")).create_run(run)
    return run.run_id


def _ps_row(project: Project, rid: str) -> str:
    listing = project.relaunch("ps", "--store", str(project.root / "store"))
    assert listing.code == 0, listing.err
    return next(line for line in listing.out.splitlines() if line.startswith(rid))


def test_a_transient_end_of_a_local_run_does_not_blame_google_cloud(project: Project) -> None:
    rid = _record(project, "local", RunState.RECOVERING, 1)
    row = _ps_row(project, rid)
    assert "transient:" in row and "Google Cloud" not in row
    status = project.relaunch("status", rid, "--store", str(project.root / "store"))
    assert "transient:" in status.out and "Google Cloud" not in status.out


def test_a_transient_end_of_a_cloud_run_keeps_its_cloud_note(project: Project) -> None:
    rid = _record(project, "vertex", RunState.RECOVERING, 1)
    assert "Google Cloud service error" in _ps_row(project, rid)


def test_a_run_running_again_no_longer_shows_the_note_of_the_attempt_before(
    project: Project,
) -> None:
    """Attempt 1 ended transient, attempt 2 runs: the run's note is not "transient"
    any more (attempt 1's reason stays in status's attempts and in events)."""
    rid = _record(project, "local", RunState.RUNNING, 2)
    row = _ps_row(project, rid)
    assert "RUNNING" in row and "transient" not in row
    store = str(project.root / "store")
    listed = project.relaunch("ps", "--json", "--store", store)
    assert '"note": null' in listed.out and '"reason": null' in listed.out
    status = project.relaunch("status", rid, "--store", store)
    assert status.code == 0, status.err
    assert "transient" not in status.out
