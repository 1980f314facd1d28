"""Stand-ins for the tools of Container-Optimized OS, so the fake runs the VM's REAL
start-up script (``startup-script`` metadata) as it would run on COS.

They are small programs on the script's PATH; what they do is set per VM through
``FAKE_COS_*`` variables (from :class:`CosBehaviour`), and they record what they were
asked in ``$FAKE_COS_STATE`` (one directory per VM):

- ``cos-extensions install gpu``: installs "the driver" (``driver``: ``ok``, ``never``
  — the command succeeds but the GPU never shows —, or ``fail``);
- ``nvidia-smi -L``: lists the VM's GPUs once the driver is installed (``gpus`` visible);
- ``docker pull``: ``denied`` answers like Artifact Registry without the reader role;
- ``docker run``: records its arguments (``docker.jsonl``), refuses ``--gpus`` and
  ``--runtime`` the way COS does (exit 125), then becomes the container's command as a
  local process whose environment is the ``-e`` pairs (plus PATH and the import path);
- ``docker-credential-gcr``, ``mount``: recorded, succeed;
- ``poweroff``: the guest shuts down (the fake moves the VM to TERMINATED).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

_COMMON = """#!{python}
import json, os, sys
state = os.environ.get("FAKE_COS_STATE", ".")
os.makedirs(state, exist_ok=True)
def record(name):
    with open(os.path.join(state, name + ".jsonl"), "a") as f:
        f.write(json.dumps(sys.argv[1:]) + "\\n")
"""

TOOLS = {
    "cos-extensions": """
record("cos-extensions")
mode = os.environ.get("FAKE_COS_DRIVER", "ok")
if sys.argv[1:3] != ["install", "gpu"]:
    sys.exit("cos-extensions: unknown command")
if mode == "fail":
    print("Failed to download GPU driver installer")
    sys.exit(1)
print("Installing GPU driver 535.288.01")
if mode == "ok":
    open(os.path.join(state, "driver"), "w").close()
""",
    "nvidia-smi": """
record("nvidia-smi")
if not os.path.exists(os.path.join(state, "driver")):
    print("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.")
    sys.exit(9)
n = int(os.environ.get("FAKE_COS_GPUS", "1"))
if n == 0:
    print("No devices were found")
    sys.exit(6)
for i in range(n):
    print(f"GPU {i}: Tesla T4 (UUID: GPU-fake-{i})")
""",
    "docker-credential-gcr": """
record("docker-credential-gcr")
""",
    "mount": """
record("mount")
""",
    "poweroff": """
record("poweroff")
open(os.path.join(state, "poweroff"), "w").close()
""",
    "docker": """
record("docker")
args = sys.argv[1:]
if args[:1] == ["pull"]:
    if os.environ.get("FAKE_COS_PULL") == "denied":
        print("Error response from daemon: Head \\"https://" + args[1].split("/")[0]
              + "/v2/manifests\\": denied: Permission \\"artifactregistry.repositories."
              "downloadArtifacts\\" denied on resource (or it may not exist).")
        sys.exit(1)
    print("Status: Downloaded newer image for " + args[1])
    sys.exit(0)
if args[:1] != ["run"]:
    sys.exit("docker (fake): only pull and run")
VALUED = {"--name", "--network", "--stop-timeout", "--volume", "-v", "--device", "-e",
          "--env", "--log-driver", "--gpus", "--runtime"}
env, i, flags = {}, 1, []
while i < len(args) and args[i].startswith("-"):
    flag = args[i]
    if "=" in flag and flag.split("=", 1)[0] in VALUED:
        flag, value = flag.split("=", 1)
        i += 1
    elif flag in VALUED:
        value = args[i + 1]
        i += 2
    else:
        value = None
        i += 1
    flags.append(flag)
    if flag in ("-e", "--env"):
        key, _, val = value.partition("=")
        env[key] = val
if "--gpus" in flags:
    print("docker: Error response from daemon: failed to create task for container: "
          "error running prestart hook #0: Using requested mode 'cdi'")
    sys.exit(125)
if "--runtime" in flags:
    print("docker: Error response from daemon: unknown or invalid runtime name: nvidia.")
    sys.exit(125)
if os.environ.get("FAKE_COS_RUN_EXIT"):
    print("docker: Error response from daemon: the fake says no.")
    sys.exit(int(os.environ["FAKE_COS_RUN_EXIT"]))
image, command = args[i], args[i + 1:]
here = os.path.dirname(os.path.abspath(__file__))
path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != here)
base = {k: os.environ[k] for k in ("HOME", "LANG", "TMPDIR", "PYTHONPATH") if k in os.environ}
os.execvpe(command[0], command, {**base, "PATH": path, **env})
""",
}


@dataclass
class CosBehaviour:
    """How the COS tools of the VMs started from now on behave."""

    driver: str = "ok"  # ok | never | fail
    driver_in: dict[str, str] = field(default_factory=dict)  # zone → driver, over ``driver``
    gpus: int | None = None  # GPUs nvidia-smi lists (None: as many as the VM has)
    pull: str = "ok"  # ok | denied
    run_exit: int | None = None  # docker run exits with this before running anything

    def env(self, zone: str, requested_gpus: int, image_denied: bool) -> dict[str, str]:
        env = {
            "FAKE_COS_DRIVER": self.driver_in.get(zone, self.driver),
            "FAKE_COS_GPUS": str(requested_gpus if self.gpus is None else self.gpus),
            "FAKE_COS_PULL": "denied" if image_denied or self.pull == "denied" else "ok",
        }
        if self.run_exit is not None:
            env["FAKE_COS_RUN_EXIT"] = str(self.run_exit)
        return env


def install_tools(bin_dir: Path) -> Path:
    """Write the stand-ins into ``bin_dir`` (once) and return it."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, body in TOOLS.items():
        path = bin_dir / name
        if not path.exists():
            path.write_text(_COMMON.format(python=sys.executable) + body)
            path.chmod(0o755)
    return bin_dir


def recorded(state: Path, tool: str) -> list[list[str]]:
    """Every call of ``tool`` in a VM's state directory, as argv lists."""
    import json

    path = state / f"{tool}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def path_with(bin_dir: Path, path: str) -> str:
    return os.pathsep.join([str(bin_dir), path])
