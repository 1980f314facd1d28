"""The README's quickstart, exactly as a new user runs it (through the CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

QUICKSTART = Path(__file__).parents[2] / "examples" / "quickstart" / "job.yaml"


def _relaunch(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relaunch.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_quickstart_survives_a_preemption_and_finishes(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "RELAUNCH_STORE": str(tmp_path / "store"),
        "RELAUNCH_SCRATCH_ROOT": str(tmp_path / "scratch"),
    }
    result = _relaunch("run", str(QUICKSTART), "--follow", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "preemption-notice" in result.stdout
    assert "SUCCEEDED after 2 attempt(s), 1 recovered" in result.stdout

    (row,) = json.loads(_relaunch("ps", "--json", env=env).stdout)
    assert row["state"] == "SUCCEEDED" and row["progress"] == "400/400 100%"
    status = json.loads(_relaunch("status", row["run_id"], "--json", env=env).stdout)
    first, second = status["attempts"]
    assert first["reason"] == "preempted" and second["reason"] == "succeeded"
    # The second attempt started from the checkpoint the first one saved, not from zero.
    assert second["first_step"] == first["last_step"] > 150
    log2 = _relaunch("logs", row["run_id"], env=env).stdout
    assert f"resumed from step {first['last_step']}" in log2
    followed = _relaunch("logs", row["run_id"], "-f", env=env).stdout
    assert followed.index("--- attempt 1 ---") < followed.index("SIGTERM: checkpoint saved")
    assert followed.index("--- attempt 2 ---") < followed.index("resumed from step")
    assert "done: 400 steps" in followed.split("--- attempt 2 ---")[1]
