"""A real Docker engine and a real registry for the tests, both started here and stopped
after: Debian's ``dockerd`` with its own data root, exec root, socket and pidfile under a
temp folder, and Debian's ``docker-registry`` on 127.0.0.1 with a config written here
(filesystem storage, no auth; or htpasswd auth, or read-only, to be refused).

Only one dockerd may run on a machine: a second one fights the first over the docker0
bridge. A lock file serialises test sessions, and a dockerd that is already running (not
ours) is used through the default socket instead of starting another.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCK = Path("/tmp/relaunch-tests-dockerd.lock")
START_DEADLINE = 120.0  # a loaded machine starts dockerd in seconds; wait far longer


def skip_reason() -> str | None:
    """Why these tests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "a real dockerd needs root (CI runs as root)"
    if shutil.which("dockerd") is None:
        return "dockerd is not installed (.ci/run installs Debian's docker.io)"
    return None


def build_cli() -> str:
    """A docker CLI that builds without the buildx plugin: Debian's docker.io (< 23)."""
    for cand in ("/usr/bin/docker", shutil.which("docker")):
        if cand and os.access(cand, os.X_OK) and _client_major(cand) < 23:
            return cand
    raise RuntimeError("no docker CLI older than 23 (Debian's docker.io) is installed")


def cli_without_buildx() -> str | None:
    """A docker CLI from 23 on with no buildx plugin, if this machine has one."""
    seen = set()
    for d in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/local/bin", "/usr/bin"]:
        cand = os.path.join(d, "docker")
        if cand in seen or not os.access(cand, os.X_OK):
            continue
        seen.add(cand)
        if _client_major(cand) >= 23:
            done = subprocess.run([cand, "buildx", "version"], capture_output=True, check=False)
            if done.returncode != 0:
                return cand
    return None


def _client_major(cli: str) -> int:
    done = subprocess.run(
        [cli, "version", "--format", "{{.Client.Version}}"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "DOCKER_HOST": "unix:///nonexistent.sock"},
    )
    head = done.stdout.strip().split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: object, what: str, log: Path | None, deadline: float = START_DEADLINE) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} not ready after {deadline}s\n{tail}")


def _stop(proc: subprocess.Popen[bytes], grace: float = 60.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _other_dockerd() -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "dockerd":
                    return int(entry.name)
    return None


@dataclass
class Engine:
    host: str  # DOCKER_HOST
    cli: str  # a docker CLI that builds with the engine's BuildKit

    def docker(self, *args: str, binary: bool = False) -> subprocess.CompletedProcess[Any]:
        return subprocess.run(
            [self.cli, *args],
            capture_output=True,
            text=not binary,
            env={**os.environ, "DOCKER_HOST": self.host},
            check=False,
            timeout=600,
        )

    def answers(self) -> bool:
        try:
            return self.docker("info", "--format", "{{.ServerVersion}}").returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False


@contextlib.contextmanager
def running_engine(base: Path) -> Iterator[Engine]:
    """dockerd under ``base`` (or the one already running), for as long as the block."""
    LOCK.touch(exist_ok=True)
    with open(LOCK) as lock:
        end = time.monotonic() + 900
        while True:  # another test session on this machine holds the engine: wait
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > end:
                    raise RuntimeError(f"{LOCK} held for 15 minutes by another session") from None
                time.sleep(1)
        cli = build_cli()
        pid = _other_dockerd()
        if pid is not None:
            engine = Engine("unix:///var/run/docker.sock", cli)
            if not engine.answers():
                raise RuntimeError(
                    f"a dockerd (pid {pid}) runs but not at the default socket; stop it"
                )
            yield engine
            return
        base.mkdir(parents=True, exist_ok=True)
        sock = base / "docker.sock"
        log = base / "dockerd.log"
        argv = [
            "dockerd",
            "--data-root",
            str(base / "data"),
            "--exec-root",
            str(base / "exec"),
            "-H",
            f"unix://{sock}",
            "--pidfile",
            str(base / "docker.pid"),
            "--iptables=false",
            "--ip6tables=false",
            "--storage-driver",
            "overlay2",
        ]
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        engine = Engine(f"unix://{sock}", cli)
        try:
            _wait(lambda: proc.poll() is None and engine.answers(), "dockerd", log)
            yield engine
        finally:
            _stop(proc)
            # dockerd's containerd shims and mounts go with it; leave nothing behind
            subprocess.run(["umount", "-R", str(base / "exec")], capture_output=True)
            subprocess.run(["umount", "-R", str(base / "data")], capture_output=True)


REGISTRY_CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
{maintenance}http:
  addr: 127.0.0.1:{port}
{auth}"""


@dataclass
class LocalRegistry:
    host: str  # 127.0.0.1:PORT
    root: Path

    def repository(self, path: str = "relaunch") -> str:
        return f"{self.host}/{path}"

    def has(self, path: str, tag: str) -> bool:
        import urllib.error
        import urllib.request

        req = urllib.request.Request(
            f"http://{self.host}/v2/{path}/manifests/{tag}",
            method="HEAD",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status == 200
        except urllib.error.HTTPError:
            return False


@contextlib.contextmanager
def running_registry(
    base: Path, *, auth: bool = False, readonly: bool = False
) -> Iterator[LocalRegistry]:
    """Debian's docker-registry on 127.0.0.1 (plain http), stopped after the block."""
    exe = shutil.which("docker-registry")
    if exe is None:
        raise RuntimeError("docker-registry is not installed (.ci/run installs it)")
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = base / "config.yml"
    config.write_text(
        REGISTRY_CONFIG.format(
            root=base / "data",
            port=port,
            maintenance="  maintenance:\n    readonly:\n      enabled: true\n" if readonly else "",
            # a missing htpasswd file is provisioned with a random user: nobody has it
            auth=f"auth:\n  htpasswd:\n    realm: r\n    path: {base / 'htpasswd'}\n"
            if auth
            else "",
        )
    )
    log = base / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([exe, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT)
    registry = LocalRegistry(f"127.0.0.1:{port}", base)

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited:\n{log.read_text(errors='replace')}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        _wait(up, "docker-registry", log)
        yield registry
    finally:
        _stop(proc, grace=30)
