"""What a run's own text says reaches the terminal as written, brackets and all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# PyTorch's distributed launchers prefix every line with "[rankN]:"; Rich markup took
# that for a style (the text vanished) and raised on "[/…]".
TRAINER = (
    "import sys\n"
    "print('[rank0]: CUDA error: out of memory [/dev/nvidia0]', file=sys.stderr)\n"
    "sys.exit(3)\n"
)


def test_bracketed_text_from_a_run_is_printed_as_is(tmp_path: Path) -> None:
    project = tmp_path / "[exp]"
    project.mkdir()
    (project / "t.py").write_text(TRAINER)
    (project / "job.yaml").write_text(
        "name: '[exp]/a'\ncommand: [python, t.py, --tag, '[/b]']\n"
        "checkpoints: {enabled: false}\nretry: {max_restarts_on_errors: 0}\n"
    )
    env = {
        **os.environ,
        "RELAUNCH_STORE": str(tmp_path / "store"),
        "RELAUNCH_SCRATCH_ROOT": str(tmp_path / "scratch"),
    }

    def relaunch(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "relaunch.cli.main", *args],
            cwd=project, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    followed = relaunch("run", "job.yaml", "--follow")
    assert followed.returncode == 1 and "Traceback" not in followed.stderr, followed.stderr
    assert f"from {project}/job.yaml" in followed.stdout  # an event's text
    run_id = followed.stdout.split()[0]
    status = relaunch("status", run_id)
    assert status.returncode == 0, status.stderr
    assert "([exp]/a)" in status.stdout
    assert "command: python t.py --tag '[/b]'" in status.stdout
    assert "| [rank0]: CUDA error: out of memory [/dev/nvidia0]" in status.stdout


def test_ctrl_c_while_following_says_the_job_goes_on_unwatched(tmp_path: Path) -> None:
    import json
    import signal
    import time

    (tmp_path / "t.py").write_text("import time\nwhile True: time.sleep(0.1)\n")
    (tmp_path / "job.yaml").write_text(
        "name: long\ncommand: [python, t.py]\ncheckpoints: {enabled: false}\n"
    )
    env = {
        **os.environ,
        "RELAUNCH_STORE": str(tmp_path / "store"),
        "RELAUNCH_SCRATCH_ROOT": str(tmp_path / "scratch"),
    }
    argv = [sys.executable, "-m", "relaunch.cli.main"]
    follow = subprocess.Popen(
        [*argv, "run", "job.yaml", "--follow"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            ps = subprocess.run(
                [*argv, "ps", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True
            )
            rows = json.loads(ps.stdout or "[]")
            if rows and rows[0]["state"] == "RUNNING":
                break
            assert time.monotonic() < deadline, (ps.stdout, ps.stderr)
            time.sleep(0.2)
        follow.send_signal(signal.SIGINT)
        _, err = follow.communicate(timeout=30)
    finally:
        follow.kill()
    run_id = rows[0]["run_id"]
    assert follow.returncode == 130
    assert err.strip().splitlines()[-1] == (
        f"stopped following {run_id}: its job goes on, but no agent watches it now (nothing "
        f"recovers a preemption) — start one: relaunch agent --queue default · "
        f"or end it: relaunch stop {run_id}"
    )
    stopped = subprocess.run(
        [*argv, "stop", run_id], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert stopped.returncode == 0 and "STOPPED" in stopped.stdout, stopped.stderr


def test_following_the_cloud_log_is_refused_with_what_to_do(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "relaunch.cli.main", "logs", "some-run", "--cloud", "-f"],
        cwd=tmp_path, env={**os.environ, "RELAUNCH_STORE": str(tmp_path / "store")},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: --cloud prints the platform's log as it is now; drop -f, or drop --cloud to "
        "follow what the runtime ships — see `relaunch logs --help`"
    )
    assert not (tmp_path / "store").exists()
