"""What relaunch says when nothing is wrong with the input but a new user would be lost:
nobody serves the queue, which store a command uses, what the agent decided, and
output that reads right in a pipe or with wide characters."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.harness import Project

QUICK = (
    "name: quick\ncommand: [python, -c, 'print(\"hello\")']\n"
    "heartbeat_interval: 0.2s\ncheckpoints: {enabled: false}\n"
)


def test_a_run_nobody_serves_says_so_in_run_ps_and_logs(project: Project) -> None:
    project.write({"job.yaml": QUICK})
    queued = project.relaunch("run", "job.yaml", "--detach")
    assert queued.code == 0, queued.err
    rid = queued.out.strip()
    assert "no agent serves queue 'default': start one (relaunch agent --queue default)" in (
        queued.err
    )
    assert "--follow" not in queued.err  # `run JOB --follow` would queue a second run
    listing = project.relaunch("ps")
    row = next(line for line in listing.out.splitlines() if line.startswith(rid))
    assert "QUEUED" in row and "no agent serves queue 'default'" in row
    status = project.relaunch("status", rid)
    assert "note: no agent serves queue 'default': start one (relaunch agent --queue default)" in (
        status.out
    )
    logs = project.relaunch("logs", rid)
    assert logs.code == 2
    assert logs.err.strip() == (
        f"error: run {rid} is QUEUED and has no output: no attempt has started — no agent "
        "serves queue 'default': start one (relaunch agent --queue default)"
    )
    assert "attempt 0" not in logs.err


def test_following_a_queued_run_says_why_it_waits_instead_of_an_empty_header(
    tmp_path: Path,
) -> None:
    (tmp_path / "job.yaml").write_text(QUICK)
    env = {**os.environ, "RELAUNCH_STORE": str(tmp_path / "store")}
    cli = [sys.executable, "-m", "relaunch.cli.main"]
    rid = subprocess.run(
        [*cli, "run", "job.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120, check=True,
    ).stdout.strip()  # fmt: skip
    follow = subprocess.Popen(
        [*cli, "logs", rid, "-f"], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert follow.stderr is not None
        line = follow.stderr.readline()  # blocks until the note, however loaded the machine
        assert line.strip() == (
            f"{rid} is QUEUED, waiting for attempt 1 to start — no agent serves queue "
            "'default': start one (relaunch agent --queue default); the run starts when it "
            "does"
        )
        # An agent comes: the output follows, with the attempt's header only now.
        agent = subprocess.run(
            [*cli, "agent", "--poll", "0.1", "--exit-when-idle", "1"], cwd=tmp_path, env=env,
            capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert agent.returncode == 0, agent.stderr
        out, _ = follow.communicate(timeout=120)
        assert out.startswith("--- attempt 1 ---\n") and "hello" in out
    finally:
        follow.kill()
        follow.wait()


def test_the_agent_logs_one_line_per_decision_and_json_for_cloud_logging(
    tmp_path: Path,
) -> None:
    (tmp_path / "job.yaml").write_text(QUICK)
    env = {**os.environ, "RELAUNCH_STORE": str(tmp_path / "store")}
    cli = [sys.executable, "-m", "relaunch.cli.main"]
    for fmt in ("text", "json"):
        rid = subprocess.run(
            [*cli, "run", "job.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=120, check=True,
        ).stdout.strip()  # fmt: skip
        agent = subprocess.run(
            [*cli, "agent", "--poll", "0.1", "--exit-when-idle", "1", "--log-format", fmt],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert agent.returncode == 0, agent.stderr
        lines = agent.stderr.splitlines()
        if fmt == "text":
            mine = [line for line in lines if f" {rid} " in line]
            kinds = [line.split(": ", 1)[0].split()[-1] for line in mine]
            for kind in ("claimed", "attempt-submitted", "attempt-running", "run-ended"):
                assert kind in kinds, lines
            ended = next(line for line in mine if "attempt-ended" in line)
            assert "attempt=1" in ended and "reason=succeeded" in ended, ended
            continue
        records = [json.loads(line) for line in lines]  # every line is JSON
        assert all(r["severity"] in ("INFO", "WARNING", "ERROR") for r in records)
        assert all("message" in r and r["time"].endswith("Z") for r in records)
        ended = next(r for r in records if r.get("kind") == "attempt-ended")
        assert ended["run_id"] == rid and ended["attempt"] == 1
        assert ended["reason"] == "succeeded" and ended["severity"] == "INFO"
        assert ended["message"].startswith(f"{rid}: attempt 1 ended")
        assert ended["logging.googleapis.com/labels"]["run_id"] == rid
        assert records[0]["kind"] == "agent-started"


def test_a_failed_run_is_an_error_line_with_its_reason(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(
        "name: boom\ncommand: [python, -c, 'import sys; sys.exit(3)']\n"
        "heartbeat_interval: 0.2s\ncheckpoints: {enabled: false}\n"
    )
    env = {**os.environ, "RELAUNCH_STORE": str(tmp_path / "store")}
    cli = [sys.executable, "-m", "relaunch.cli.main"]
    subprocess.run([*cli, "run", "job.yaml"], cwd=tmp_path, env=env, timeout=120, check=True,
                   capture_output=True)  # fmt: skip
    agent = subprocess.run(
        [*cli, "agent", "--poll", "0.1", "--exit-when-idle", "1", "--log-format", "json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    records = [json.loads(line) for line in agent.stderr.splitlines()]
    ended = next(r for r in records if r.get("kind") == "run-ended")
    assert ended["severity"] == "ERROR" and ended["state"] == "FAILED"
    attempt = next(r for r in records if r.get("kind") == "attempt-ended")
    assert attempt["severity"] == "WARNING" and attempt["reason"] == "user-error"
    # The note names the run, not a placeholder.
    status = subprocess.run([*cli, "status", ended["run_id"]], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert f"relaunch status {ended['run_id']}" in status.stdout
    assert "relaunch status RUN)" not in status.stdout


def test_the_store_is_found_at_the_repository_top_from_any_subfolder(project: Project) -> None:
    (project.root / ".git").mkdir()  # a repository without relaunch.toml
    project.write({"examples/quickstart/job.yaml": QUICK})
    sub = project.root / "examples" / "quickstart"
    project.monkeypatch.chdir(sub)
    queued = project.relaunch("run", "job.yaml")
    assert queued.code == 0, queued.err
    assert f"queued on {project.root / '.relaunch'}" in queued.err
    assert not (sub / ".relaunch").exists()
    project.monkeypatch.chdir(project.root)
    assert queued.out.strip() in project.relaunch("ps").out


def test_the_store_folder_ignores_itself(project: Project) -> None:
    subprocess.run(["git", "init", "-q", str(project.root)], check=True)
    project.write({"job.yaml": QUICK})
    assert project.relaunch("run", "job.yaml").code == 0
    assert (project.root / ".relaunch" / ".gitignore").read_text().splitlines()[-1] == "*"
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=project.root,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert status.stdout.split() == ["??", "job.yaml"]
    # The store lists runs, never its own ignore file.
    assert [r["name"] for r in json.loads(project.relaunch("ps", "--json").out)] == ["quick"]


def test_empty_store_says_where_it_looked(project: Project) -> None:
    listing = project.relaunch("ps")
    assert listing.code == 0
    assert listing.out.strip() == (
        f"no runs in the last day (--all for older) in {project.root / '.relaunch'}"
    )
    assert not (project.root / ".relaunch").exists()  # reading creates no store


def test_ps_aligns_wide_names_and_keeps_one_line_per_run(project: Project) -> None:
    for i, name in enumerate(["训练模型", "🚀 rocket", "plain"]):
        project.write({f"j{i}.yaml": QUICK.replace("name: quick", f"name: '{name}'")})
        assert project.relaunch("run", f"j{i}.yaml").code == 0
    lines = project.relaunch("ps").out.splitlines()
    assert len(lines) == 4
    from relaunch.cli.table import cell_width

    # STATE starts at the same terminal column on every line.
    cols = {cell_width(line[: line.index("QUEUED" if "QUEUED" in line else "STATE")])
            for line in lines}  # fmt: skip
    assert len(cols) == 1, lines


def test_doctor_reports_missing_credentials_as_a_finding(project: Project) -> None:
    done = project.relaunch("doctor", "--store", "gs://relaunch-no-creds/x")
    assert done.code == 1
    assert "Traceback" not in done.out + done.err
    first = done.out.splitlines()[0]
    assert "store gs://relaunch-no-creds/x: no usable Google Cloud credentials" in first
    assert "gcloud auth application-default login" in first


def test_piped_images_list_is_plain_unwrapped_lines(tmp_path: Path) -> None:
    repo = "us-central1-docker.pkg.dev/a-rather-long-project-name/a-rather-long-registry-name"
    (tmp_path / "relaunch.toml").write_text(
        f'[image_stack]\nrepository = "{repo}"\n\n[images.trainer]\n'
        'dockerfile = "Dockerfile"\ninputs = ["Dockerfile"]\n'
    )
    (tmp_path / "Dockerfile").write_text("FROM python:3.11-slim\n")
    done = subprocess.run(
        [sys.executable, "-m", "relaunch.cli.main", "images", "list"], cwd=tmp_path,
        env={**os.environ, "COLUMNS": "80"}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and "\x1b[" not in done.stdout
    assert lines[0].split() == ["IMAGE", "PARENT", "TAG", "URI"]
    name, parent, tag, uri = lines[1].split()
    assert (name, parent) == ("trainer", "-") and uri == f"{repo}/trainer:{tag}"
    assert (tmp_path / ".relaunch" / ".gitignore").is_file()  # its stat cache stays out of git


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_work_longer_than_a_second_shows_a_spinner_on_a_terminal_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from relaunch.cli.images import _working

    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    with _working("hashing the image stack", after=0.05):
        deadline = time.monotonic() + 60
        while "hashing the image stack…" not in term.getvalue():
            assert time.monotonic() < deadline, "no progress shown"
            time.sleep(0.05)
    quick = _Terminal()
    monkeypatch.setattr(sys, "stderr", quick)
    with _working("hashing the image stack", after=30):
        pass  # done long before a second: nothing shown
    assert quick.getvalue() == ""
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    with _working("hashing the image stack", after=0):
        time.sleep(0.2)
    assert piped.getvalue() == ""  # a pipe gets no spinner


def test_a_secret_missing_here_is_named_at_submit_and_by_doctor(project: Project) -> None:
    project.write({"job.yaml": QUICK + "env_from_secret: {API_TOKEN: 'env:RELAUNCH_TEST_UNSET'}\n"})
    queued = project.relaunch("run", "job.yaml")
    assert queued.code == 0, queued.err
    assert (
        "note: secret API_TOKEN (env:RELAUNCH_TEST_UNSET) is not set here; the agent that runs "
        "the job must have it, or the job cannot start"
    ) in queued.err
    doctor = project.relaunch("doctor", "job.yaml")
    assert "secret API_TOKEN (env:RELAUNCH_TEST_UNSET) is not set here" in doctor.out
    with_it = project.relaunch("doctor", "job.yaml", env={"RELAUNCH_TEST_UNSET": "x" * 8})
    assert "is not set here" not in with_it.out


def test_a_hung_trainer_that_failed_is_not_said_to_be_restarted(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(
        "name: hang\ncommand: [python, -c, 'import time; print(1, flush=True); time.sleep(600)']\n"
        "heartbeat_interval: 0.2s\nstall_timeout: 2s\ngrace_period: 1s\n"
        "checkpoints: {enabled: false}\n"
    )
    env = {**os.environ, "RELAUNCH_STORE": str(tmp_path / "store"),
           "RELAUNCH_SCRATCH_ROOT": str(tmp_path / "scratch")}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "relaunch.cli.main", "run", "job.yaml", "--follow"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    final = done.stdout.strip().splitlines()
    verdict = next(line for line in final if line.startswith("FAILED after"))
    assert "no heartbeat within stall_timeout" in verdict
    assert "restarted" not in done.stdout and "resumed" not in done.stdout


def test_a_stored_name_with_a_newline_stays_on_its_row() -> None:
    """Submit refuses such names now; records written before still list on one line."""
    from relaunch.cli.table import render_table

    text = render_table(("RUN", "NAME", "NOTE"), [("a", "two\nlines\tx", "n"), ("b", "ok", "m")])
    lines = text.splitlines()
    assert len(lines) == 3 and lines[1].split() == ["a", "two\\nlines\\tx", "n"]
    assert lines[2].rindex(" m") == lines[1].rindex(" n")  # the NOTE column lines up


def test_an_agent_that_exits_idle_after_failing_ticks_says_so_and_exits_1(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only store: every tick fails, so the agent owns nothing and goes idle —
    which is not "nothing left to do" (a cron job would read exit 0 as all is well)."""
    from relaunch.errors import StoreError
    from relaunch.store.local import LocalStore

    def read_only(self: LocalStore, key: str, data: bytes, **_: object) -> int:
        raise StoreError(f"cannot write {key}: Read-only file system")

    monkeypatch.setattr(LocalStore, "put", read_only)
    result = project.relaunch(
        "agent", "--exit-when-idle", "0.3", "--poll", "0.1", "--lease-ttl", "2"
    )
    assert result.code == 1, result.err
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("error: the agent's ticks failed until it exited (last: cannot write")


def test_every_option_of_every_command_has_help_text() -> None:
    import click

    from relaunch.cli.main import COMMANDS, cli

    ctx = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None
        commands = [command]
        if isinstance(command, click.Group):
            commands += [command.get_command(ctx, sub) for sub in command.list_commands(ctx)]
        for each in commands:
            assert each is not None
            bare = [p.name for p in each.params if isinstance(p, click.Option) and not p.help]
            assert bare == [], f"relaunch {name} {each.name}: options without help: {bare}"


def test_the_followed_bar_ends_where_the_run_did_though_its_last_heartbeat_was_missed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The follower saw a heartbeat at step 376 of 400, then the run ended and its
    heartbeat was cleaned up before the next look: the bar stayed at 376/400 under
    SUCCEEDED. It ends at the step the run record keeps, as ps shows it."""
    from collections.abc import Callable
    from types import SimpleNamespace

    from relaunch.api import RunStatus
    from relaunch.cli.run import _follow
    from relaunch.runs.records import Heartbeat, RunRecord
    from relaunch.spec.job import JobSpec
    from relaunch.states import RunState

    spec = JobSpec(name="t", command=["true"])
    run = RunRecord(run_id="r", name="t", queue="default", backend="local", spec=spec,
                    attempt=2, state=RunState.RUNNING)  # fmt: skip
    beat = Heartbeat(time=0.0, attempt=2, step=376, total=400)
    done = run.model_copy(update={"state": RunState.SUCCEEDED, "step": 400, "total": 400})

    def wait(rid: str, on_change: Callable[[RunStatus], None]) -> RunRecord:
        on_change(RunStatus(run=run, attempts=[], heartbeat=beat, events=[]))
        return done

    ws = SimpleNamespace(store=SimpleNamespace(url="file:///s"), wait=wait)
    _follow(ws, "r")  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "400/400" in out and "376/400" not in out.split("SUCCEEDED")[-2]
