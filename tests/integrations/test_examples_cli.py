"""The examples as a user runs them: `relaunch run examples/<name>/job.yaml --follow` on
the local backend, with the agent's two staged spot preemptions (job.yaml local.preempt)
— and the same final parameters as the trainer run once without relaunch."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("name", "module"), [("pytorch", "torch"), ("accelerate", "accelerate")])
def test_the_example_survives_two_preemptions_with_the_uninterrupted_parameters(
    tmp_path: Path, name: str, module: str
) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (relaunch[{module}])")
    folder = tmp_path / name
    shutil.copytree(ROOT / "examples" / name, folder)
    env = {**os.environ, "RELAUNCH_STORE": str(tmp_path / "store"),
           "RELAUNCH_SCRATCH_ROOT": str(tmp_path / "scratch"), "PYTHONPATH": str(ROOT)}  # fmt: skip
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    result = subprocess.run(
        [sys.executable, "-m", "relaunch.cli.main", "run", str(folder / "job.yaml"), "--follow"],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("preemption-notice") == 2
    assert "SUCCEEDED after 3 attempt(s), 2 recovered" in result.stdout
    assert result.stdout.count("checkpoint-restored") == 2
    final = json.loads((folder / "final.json").read_text())

    command = json.loads(json.dumps(_command(folder)))
    ref_env = {**env, "RELAUNCH_CHECKPOINT_DIR": str(tmp_path / "ref-ckpt")}
    ref = tmp_path / "ref.json"
    command[command.index("final.json")] = str(ref)
    subprocess.run(command, cwd=folder, env=ref_env, check=True, timeout=600)
    assert final["checksum"] == json.loads(ref.read_text())["checksum"]


def _command(folder: Path) -> list[str]:
    import yaml

    command = [str(a) for a in yaml.safe_load((folder / "job.yaml").read_text())["command"]]
    if command[0] == "python":
        command[0] = sys.executable
    return command
