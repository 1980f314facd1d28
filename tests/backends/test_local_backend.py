from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from relaunch.backends.base import SubmitContext
from relaunch.backends.local.backend import LocalBackend, proc_start_time
from relaunch.errors import BackendError, UserInputError
from relaunch.runs.records import AttemptRecord, RunRecord
from relaunch.spec.loader import parse_job
from relaunch.states import AttemptState
from relaunch.store import LocalStore


def _run(tmp_path: Path, command: str) -> RunRecord:
    spec = parse_job(f"name: t\ncommand: {command}\ncheckpoints: {{enabled: false}}\n", "j")
    return RunRecord(
        run_id="r",
        name="t",
        queue="default",
        backend="local",
        spec=spec,
        base_dir=str(tmp_path),
        attempt=1,
    )


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalStore:
    """A store, and the attempts' scratch folders kept under ``tmp_path``."""
    monkeypatch.setenv("RELAUNCH_SCRATCH_ROOT", str(tmp_path / "scratch"))
    return LocalStore(tmp_path / "store")


def _submit(backend: LocalBackend, run: RunRecord, store: LocalStore) -> dict[str, object]:
    store.put("runs/r/run.json", run.model_dump_json().encode())
    attempt = AttemptRecord(run_id="r", n=1, backend="local")
    return backend.submit(run, attempt, SubmitContext(store=store, command=run.spec.command))


def test_an_exited_attempt_of_another_agent_is_ended_even_as_a_zombie(
    tmp_path: Path, store: LocalStore
) -> None:
    """Agent A started it (so it is A's child); agent B took the run over. When it
    exits before A reaps it, B must still see it ENDED, not wait on a zombie forever."""
    agent_a, agent_b = LocalBackend(), LocalBackend()
    handle = _submit(agent_a, _run(tmp_path, "[python, -c, 'pass']"), store)
    deadline = time.monotonic() + 30
    while proc_start_time(int(handle["pid"])) is not None:  # type: ignore[call-overload]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert Path(f"/proc/{handle['pid']}").exists()  # a zombie: A never reaped it
    assert agent_b.poll(handle).state is AttemptState.ENDED


def test_cancel_then_kill_ends_the_whole_group(tmp_path: Path, store: LocalStore) -> None:
    backend = LocalBackend()
    # The command ignores SIGTERM: only the kill after the grace period ends it.
    code = "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    cmd = f"[python, -c, '{code}']"
    handle = _submit(backend, _run(tmp_path, cmd), store)
    time.sleep(1.0)
    assert backend.poll(handle).state is AttemptState.RUNNING
    backend.cancel(handle, grace=5)
    time.sleep(0.5)
    backend.kill(handle)
    deadline = time.monotonic() + 10
    while backend.poll(handle).state is not AttemptState.ENDED:
        assert time.monotonic() < deadline, "the group survived SIGKILL"
        time.sleep(0.1)


def test_find_recovers_a_handle_from_the_process_table(tmp_path: Path, store: LocalStore) -> None:
    """Right after submit too: a process still inside execve shows an empty environ
    for a moment (about one start in seven on a busy machine), so do it a few times."""
    backend = LocalBackend()
    run = _run(tmp_path, "[python, -c, 'import time; time.sleep(30)']")
    for _ in range(4):
        handle = _submit(backend, run, store)
        try:
            found = backend.find(run, AttemptRecord(run_id="r", n=1, backend="local"))
            assert found is not None and found["pid"] == handle["pid"]
            assert found["start"] == handle["start"]
            assert backend.find(run, AttemptRecord(run_id="r", n=2, backend="local")) is None
        finally:
            backend.kill(handle)


def _ended(backend: LocalBackend, handle: dict[str, object]) -> None:
    deadline = time.monotonic() + 30
    while backend.poll(handle).state is not AttemptState.ENDED:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_logs_are_the_raw_output_of_an_attempt_on_this_host(
    tmp_path: Path, store: LocalStore
) -> None:
    backend = LocalBackend()
    go = tmp_path / "go"
    (tmp_path / "hello.py").write_text(
        "import pathlib, time\nprint('[rank0]: hello', flush=True)\n"
        f"while not pathlib.Path({str(go)!r}).exists():\n    time.sleep(0.05)\n"
    )
    command = "[python, hello.py]"
    handle = _submit(backend, _run(tmp_path, command), store)
    deadline = time.monotonic() + 30
    while "[rank0]: hello" not in list(backend.logs(handle)):
        assert time.monotonic() < deadline, list(backend.logs(handle))
        time.sleep(0.05)
    assert list(backend.logs({**handle, "scratch": str(tmp_path / "store")})) == []
    with pytest.raises(BackendError, match="ran on host elsewhere"):
        backend.logs({**handle, "host": "elsewhere"})
    go.touch()
    _ended(backend, handle)
    # everything is in the store now: the scratch folder went with the attempt
    assert not Path(str(handle["scratch"])).exists()
    assert store.get("runs/r/logs/1.log")[0] == b"[rank0]: hello\n"


SECRET_SAVER = (
    "import os,pathlib; d=pathlib.Path(os.environ['RELAUNCH_CHECKPOINT_DIR']); "
    "(d/('model-'+os.environ['TOKEN']+'.pt')).write_text('w')"
)


def _secret_run(tmp_path: Path, command: str) -> RunRecord:
    spec = parse_job(
        f'name: t\ncommand: [python, -c, "{command}"]\nenv_from_secret: {{TOKEN: "env:MY_TOKEN"}}\n'
        "checkpoints: {sync_interval: 0}\n",
        "j",
    )
    return RunRecord(run_id="r", name="t", queue="default", backend="local", spec=spec,
                     base_dir=str(tmp_path), attempt=1)  # fmt: skip


def _files_under(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*")] if folder.exists() else []


def test_an_ended_attempt_leaves_no_checkpoint_copy_and_no_secret_on_disk(
    tmp_path: Path, store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_TOKEN", "s3cr3t-value")
    backend = LocalBackend()
    handle = _submit(backend, _secret_run(tmp_path, SECRET_SAVER), store)
    _ended(backend, handle)
    keys = [m.key for m in store.list("runs/r/checkpoints/").objects]
    assert any("model-%5Bsecret%3ATOKEN%5D.pt" in k for k in keys), keys  # committed, masked
    assert not any("s3cr3t-value" in f for f in _files_under(tmp_path / "scratch"))
    assert not Path(str(handle["scratch"])).exists()


def test_an_attempt_killed_before_it_stored_everything_keeps_only_its_output(
    tmp_path: Path, store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runtime SIGKILLed with its group: nothing will ship its files any more. The
    checkpoint copy goes (attempts restore from the store); its output stays to read."""
    monkeypatch.setenv("MY_TOKEN", "s3cr3t-value")
    backend = LocalBackend()
    saver = SECRET_SAVER + "; print('saved', flush=True); import time; time.sleep(60)"
    handle = _submit(backend, _secret_run(tmp_path, saver), store)
    scratch = Path(str(handle["scratch"]))
    deadline = time.monotonic() + 30
    while "saved" not in list(backend.logs(handle)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    backend.kill(handle)
    _ended(backend, handle)
    assert not (scratch / "checkpoints").exists()
    assert not any("s3cr3t-value" in f for f in _files_under(tmp_path / "scratch"))
    assert "saved" in list(backend.logs(handle))


def test_the_scratch_root_is_private_to_the_user(tmp_path: Path, store: LocalStore) -> None:
    backend = LocalBackend()
    root = tmp_path / "scratch"
    root.mkdir(mode=0o755)
    root.chmod(0o755)  # made by an older version: readable by everyone
    handle = _submit(backend, _run(tmp_path, "[python, -c, 'pass']"), store)
    _ended(backend, handle)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_a_scratch_root_that_is_a_symlink_is_refused(
    tmp_path: Path, store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "scratch").symlink_to(elsewhere)
    run = _run(tmp_path, "[python, -c, 'pass']")
    with pytest.raises(BackendError, match=r"scratch folder .* is a symlink"):
        _submit(LocalBackend(), run, store)
    with pytest.raises(UserInputError, match="is a symlink"):
        LocalBackend().check(run, store)
    assert list(elsewhere.iterdir()) == []


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give the folder to another user")
def test_a_scratch_root_of_another_user_is_refused(tmp_path: Path, store: LocalStore) -> None:
    root = tmp_path / "scratch"
    root.mkdir(mode=0o700)
    os.chown(root, 4242, -1)  # someone else made the predictable name first
    with pytest.raises(BackendError, match="belongs to uid 4242, not to you"):
        _submit(LocalBackend(), _run(tmp_path, "[python, -c, 'pass']"), store)
    assert list(root.iterdir()) == []


def test_check_refuses_a_checkpoints_dir_with_the_users_files(
    tmp_path: Path, store: LocalStore
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("precious")
    (tmp_path / "t.py").write_text("pass\n")
    spec = parse_job("name: t\ncommand: [python, t.py]\ncheckpoints: {dir: data}\n", "j")
    run = RunRecord(run_id="r", name="t", queue="default", backend="local", spec=spec,
                    base_dir=str(tmp_path), job_file=str(tmp_path / "a.yaml"))  # fmt: skip
    with pytest.raises(UserInputError, match=r"a.yaml: checkpoints.dir .*/data holds files"):
        LocalBackend().check(run, store)
    (tmp_path / "data" / "train.csv").unlink()
    LocalBackend().check(run, store)  # empty: fine


def test_a_handle_whose_pid_is_now_another_groups_leader_signals_nobody() -> None:
    """The pid was reused (or the record edited) and leads another group now — another
    run's runtime, say: the attempt is over, and that group is left alone."""
    import subprocess

    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        start = proc_start_time(other.pid)
        assert start is not None
        backend = LocalBackend()
        handle = {"pid": other.pid, "start": start - 1, "host": backend.host}
        assert backend.poll(handle).state is AttemptState.ENDED  # killed the group before
        backend.kill(handle)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize(
    "command",
    [
        "[python, -c, 'pass']",  # `python` is relaunch's interpreter, as submit gives it
        "[python, -m, relaunch.runtime]",
        "[python, train.py, --lr, '0.1']",
        "[sh, -c, 'true']",
        "[./run.sh]",
        "['${run_name}']",  # resolved at submission: not judged here
    ],
)
def test_a_command_this_machine_can_start_is_accepted(
    tmp_path: Path, store: LocalStore, command: str
) -> None:
    (tmp_path / "train.py").write_text("pass\n")
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "run.sh").chmod(0o755)
    LocalBackend().check(_run(tmp_path, command), store)


def test_a_program_in_the_workdir_needs_its_path_and_execute_permission(
    tmp_path: Path, store: LocalStore
) -> None:
    """Found the way exec finds it: `run.sh` alone is looked up on PATH, not in the
    workdir; `./run.sh` without the execute bit cannot start."""
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    with pytest.raises(UserInputError, match=r"'run\.sh' is not on the PATH"):
        LocalBackend().check(_run(tmp_path, "[run.sh]"), store)
    with pytest.raises(UserInputError, match=r"'\./run\.sh' is not an executable file"):
        LocalBackend().check(_run(tmp_path, "[./run.sh]"), store)
