"""The COS stand-ins behave like COS where relaunch's start-up script depends on it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fakegcp.cos import CosBehaviour, install_tools, recorded


def tool(bin_dir: Path, state: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "FAKE_COS_STATE": str(state), **env}
    full["PATH"] = os.pathsep.join([str(bin_dir), full.get("PATH", "")])
    return subprocess.run(list(argv), env=full, capture_output=True, text=True, timeout=60)


def test_gpu_flags_fail_with_125_and_mounts_run_the_command(tmp_path: Path) -> None:
    bin_dir, state = install_tools(tmp_path / "bin"), tmp_path / "vm"
    for flag in (["--gpus", "all"], ["--runtime=nvidia"]):
        done = tool(bin_dir, state, "docker", "run", *flag, "img", "true")
        assert done.returncode == 125, done.stdout
    out = tmp_path / "env.txt"
    script = f"import os; open({str(out)!r}, 'w').write(os.environ['LD_LIBRARY_PATH'])"
    done = tool(
        bin_dir, state, "docker", "run", "--rm", "--volume", "/var/lib/nvidia/lib64:/x",
        "-e", "LD_LIBRARY_PATH=/usr/local/nvidia/lib64", "img", sys.executable, "-c", script,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert out.read_text() == "/usr/local/nvidia/lib64"
    assert recorded(state, "docker")[-1][:3] == ["run", "--rm", "--volume"]


def test_the_driver_shows_the_gpus_only_once_installed(tmp_path: Path) -> None:
    bin_dir, state = install_tools(tmp_path / "bin"), tmp_path / "vm"
    env = CosBehaviour(gpus=2).env("z", 1, image_denied=False)
    assert tool(bin_dir, state, "nvidia-smi", "-L", **env).returncode != 0
    assert tool(bin_dir, state, "cos-extensions", "install", "gpu", **env).returncode == 0
    listed = tool(bin_dir, state, "nvidia-smi", "-L", **env)
    assert listed.stdout.count("GPU ") == 2
    never = CosBehaviour(driver="never").env("z", 1, image_denied=False)
    other = tmp_path / "vm2"
    tool(bin_dir, other, "cos-extensions", "install", "gpu", **never)
    assert tool(bin_dir, other, "nvidia-smi", "-L", **never).returncode != 0
    denied = tool(bin_dir, state, "docker", "pull", "r/i:1", **{**env, "FAKE_COS_PULL": "denied"})
    assert denied.returncode == 1 and "denied" in denied.stdout
