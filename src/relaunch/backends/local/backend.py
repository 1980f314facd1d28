"""The local backend: each attempt is a process group on this machine.

The group is started in its own session, so it outlives the agent that started it;
its handle (pid, the kernel's start time of that pid, host) lets any later agent on
this machine find it again and tell it from an unrelated process that reused the pid.
Linux only (it reads ``/proc``).

Each submission gets a scratch folder under a per-user root (mode 0700, checked to be
the user's own real folder): the runtime's working files and its raw output. The first
poll that finds the attempt ended removes it once the runtime said everything is in
the store (``runtime/scratch.py``); otherwise only its checkpoint copy goes, and the
output stays for a look (``relaunch logs --cloud``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from relaunch.backends.base import AttemptStatus, Backend, Handle, SubmitContext
from relaunch.backends.contract import inherited_environment, job_environment
from relaunch.errors import BackendError, UserInputError
from relaunch.runs.records import AttemptRecord, RunRecord
from relaunch.runtime.folder import FolderNotOurs, check_folder, run_is_over
from relaunch.runtime.scratch import STORED
from relaunch.states import AttemptState, Reason
from relaunch.store.base import ObjectStore


def scratch_root() -> Path:
    return Path(
        os.environ.get("RELAUNCH_SCRATCH_ROOT")
        or Path(tempfile.gettempdir()) / f"relaunch-{os.getuid()}"
    )


def private_scratch_root() -> Path:
    """The scratch root, created with mode 0700 if missing; refused unless it is a real
    folder (not a symlink) of this user's. Under a shared /tmp its predictable name
    could be made first by someone else, to read the attempts' files or plant a link."""
    root = scratch_root()
    try:
        root.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    except OSError as e:
        raise _unsafe(root, f"cannot be created ({e.strerror or e})") from e
    st = os.lstat(root)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise _unsafe(root, "is a symlink or not a folder")
    if st.st_uid != os.getuid():
        raise _unsafe(root, f"belongs to uid {st.st_uid}, not to you (uid {os.getuid()})")
    if st.st_mode & 0o077:  # ours, made readable by an older version: close it
        os.chmod(root, 0o700)
    return root


def _unsafe(root: Path, why: str) -> BackendError:
    return BackendError(
        f"the scratch folder {root} {why}",
        reason=Reason.PERMISSION,
        hint="remove it (it holds only relaunch's scratch files), or set "
        "RELAUNCH_SCRATCH_ROOT to a folder of your own",
    )


def proc_start_time(pid: int) -> int | None:
    """The pid's start time in clock ticks since boot, or None if there is no such pid
    (or it is a zombie: dead but not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


CHECKPOINTS = "checkpoints"  # the attempt's checkpoint folder, unless the job names one
REAP_INTERVAL = 1.0  # seconds between reaps of every exited child
_PYTHON = re.compile(r"python[0-9.]*")
_MACRO = "${"


def workdir_of(run: RunRecord) -> Path:
    """Where the command runs: the job's workdir, relative to its file's folder."""
    base = Path(run.base_dir or ".")
    return base / run.spec.workdir if run.spec.workdir else base


def command_path(environ: Mapping[str, str], job_env: Mapping[str, str]) -> str:
    """The PATH the command is looked up on: the job's own, else the agent's with the
    folder of relaunch's interpreter first (`python` in a command means that one)."""
    if "PATH" in job_env:
        return job_env["PATH"]
    return os.pathsep.join([str(Path(sys.executable).parent), environ.get("PATH", "")])


def missing_program(run: RunRecord, environ: Mapping[str, str]) -> str | None:
    """What of the command's start cannot be found, run as ``submit`` will run it (in
    the workdir, on ``command_path``): its program, or the script `python` is given;
    None when all is there, or when a macro (resolved at submission) hides it."""
    argv, workdir = run.spec.argv, workdir_of(run)
    if not argv or _MACRO in argv[0] or _MACRO in run.spec.env.get("PATH", ""):
        return None
    program = argv[0]
    if os.sep in program:
        target = workdir / program
        if not target.is_file() or not os.access(target, os.X_OK):
            return f"program {program!r} is not an executable file in {workdir}"
    else:
        path = command_path(environ, run.spec.env)
        entries = [str(workdir / (entry or ".")) for entry in path.split(os.pathsep)]
        found = shutil.which(program, path=os.pathsep.join(entries))
        if found is None:
            return f"program {program!r} is not on the PATH the job gets"
        if _PYTHON.fullmatch(program) and len(argv) > 1:
            script = argv[1]
            if script.endswith(".py") and _MACRO not in script and not (workdir / script).is_file():
                return f"script {script!r} is not in {workdir}"
    return None


class LocalBackend(Backend):
    name = "local"
    poll_interval = 0.2

    def __init__(self) -> None:
        self.host = socket.gethostname()
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._next_reap = 0.0

    def check(self, run: RunRecord, store: ObjectStore) -> None:
        """Refused at queue time, not an attempt later: a command this machine cannot
        start (a cloud job's image differs, so only here), a checkpoints.dir that holds
        files relaunch did not put there (the runtime refuses it again at start, before
        it deletes anything), and a scratch root that is not the user's own."""
        where = run.job_file or f"run {run.run_id}"
        if workdir_of(run).is_dir():  # a missing one is said by the caller, and by submit
            missing = missing_program(run, os.environ)
            if missing is not None:
                raise UserInputError(
                    f"{where}: command: {missing}",
                    hint="fix command: (the local backend runs it in the job's workdir), "
                    "or install the program",
                )
        spec = run.spec
        if spec.checkpoints.enabled and spec.checkpoints.dir:
            try:
                check_folder(
                    Path(spec.checkpoints.dir),
                    run.run_id,
                    cwd=workdir_of(run),
                    is_over=lambda owner: run_is_over(store, owner),
                )
            except FolderNotOurs as e:
                raise UserInputError(f"{where}: {e.message}", hint=e.hint) from None
        try:
            private_scratch_root()
        except BackendError as e:
            raise UserInputError(f"{where}: {e.message}", hint=e.hint) from None

    def submit(self, run: RunRecord, attempt: AttemptRecord, ctx: SubmitContext) -> Handle:
        # One folder per submission: a superseded submission of the same attempt (an agent
        # that froze while submitting) must not touch the live one's files.
        name = f"{attempt.n}-{ctx.token}" if ctx.token else str(attempt.n)
        scratch = private_scratch_root() / run.run_id / name
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        workdir = workdir_of(run)
        if not workdir.is_dir():
            raise BackendError(
                f"workdir {workdir} does not exist",
                reason=Reason.USER_ERROR,
                hint="fix workdir in job.yaml (relative to its folder)",
            )
        env = inherited_environment(run, os.environ)  # not the agent's whole shell
        env["PATH"] = command_path(env, {})
        env.update(ctx.env)
        env.update(job_environment(run, attempt.n, ctx.store.url, token=ctx.token))
        env["RELAUNCH_SCRATCH"] = str(scratch)
        env["RELAUNCH_CHECKPOINT_DIR"] = str(scratch / CHECKPOINTS)
        argv = [sys.executable, "-m", "relaunch.runtime", "--", *ctx.command]
        with open(scratch / "runtime.out", "wb") as out:
            try:
                proc = subprocess.Popen(
                    argv,
                    cwd=workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as e:
                raise BackendError(
                    f"cannot start the runtime: {e}", reason=Reason.USER_ERROR
                ) from e
        self._children[proc.pid] = proc
        return {
            "pid": proc.pid,
            "start": proc_start_time(proc.pid),
            "host": self.host,
            "where": self.host,
            "scratch": str(scratch),
        }

    def _reap(self, pid: int) -> None:
        """Collect ``pid`` if it is a child of ours that exited, and every other exited
        child at most every REAP_INTERVAL — including attempts another agent has taken
        over, whose exit would otherwise stay a zombie in our process table. (Reaping
        every child on every poll cost n² waitpid calls per tick.)"""
        child = self._children.get(pid)
        if child is not None and child.poll() is not None:
            del self._children[pid]
        now = time.monotonic()
        if now >= self._next_reap:
            self._next_reap = now + REAP_INTERVAL
            for other, each in list(self._children.items()):
                if each.poll() is not None:
                    del self._children[other]

    def _alive(self, handle: Handle) -> bool:
        self._reap(int(handle["pid"]))
        start = proc_start_time(int(handle["pid"]))
        return start is not None and start == handle.get("start")

    def _still_its_group(self, handle: Handle) -> bool:
        """Whether the process group named by the handle's pid can still be the
        attempt's: its leader is alive as the handle knows it, or gone. A process that
        holds the pid now with another start time means the group is gone for good —
        Linux reuses no pid while a group of that id has members — and the pid is
        someone else's (another run's runtime, say), never to be signalled."""
        start = proc_start_time(int(handle["pid"]))
        return start is None or start == handle.get("start")

    def _group_alive(self, handle: Handle) -> bool:
        """Whether any live (non-zombie) process remains in the attempt's group."""
        if not self._still_its_group(handle):
            return False
        pgid = int(handle["pid"])
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                return True
        return False

    def poll(self, handle: Handle) -> AttemptStatus:
        if handle.get("host") != self.host:
            raise BackendError(
                f"this local attempt runs on host {handle.get('host')}",
                reason=Reason.TRANSIENT,
                hint="run the agent on that host to manage it",
            )
        if self._alive(handle):
            return AttemptStatus(AttemptState.RUNNING)
        # The runtime (group leader) is gone: make sure nothing of the attempt survives
        # it before saying it ended, so a next attempt can never overlap this one.
        if handle.get("start") is not None and self._group_alive(handle):
            self.kill(handle)
            if self._group_alive(handle):
                return AttemptStatus(AttemptState.RUNNING, detail="ending")
        self._tidy(handle)
        return AttemptStatus(AttemptState.ENDED)

    def _tidy(self, handle: Handle) -> None:
        """Nothing of the attempt runs any more: remove its scratch folder when the
        runtime said its log and result are in the store; otherwise only the checkpoint
        copy (attempts restore from the store), keeping the output for a look."""
        scratch = _scratch_of(handle)
        if scratch is None or not scratch.is_dir():
            return
        if (scratch / STORED).exists():
            shutil.rmtree(scratch, ignore_errors=True)
            try:
                scratch.parent.rmdir()  # the run's folder, once its last attempt is gone
            except OSError:
                pass
        else:
            shutil.rmtree(scratch / CHECKPOINTS, ignore_errors=True)

    def cancel(self, handle: Handle, grace: float) -> None:
        # SIGTERM to the runtime only: it forwards it to the command (like `docker stop`);
        # the agent kills the whole group when the grace period is over.
        if self._alive(handle):
            try:
                os.kill(int(handle["pid"]), signal.SIGTERM)
            except ProcessLookupError:
                pass

    def send_preemption_notice(self, handle: Handle) -> None:
        self.cancel(handle, 0)

    def kill(self, handle: Handle) -> None:
        if handle.get("start") is None or not self._still_its_group(handle):
            return
        try:
            os.killpg(int(handle["pid"]), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        child = self._children.get(int(handle["pid"]))
        if child is not None:
            try:
                child.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass

    def logs(self, handle: Handle) -> Iterator[str]:
        """The attempt's raw output on this host (the runtime's stdout and stderr, as a
        container's log would be): what `relaunch logs --cloud` shows for a local run."""
        if handle.get("host") != self.host:
            raise BackendError(
                f"this local attempt ran on host {handle.get('host')}",
                reason=Reason.USER_ERROR,
                hint="read it there, or drop --cloud for the log the runtime shipped",
            )
        scratch = _scratch_of(handle)
        if scratch is None:
            return iter(())
        try:
            text = (scratch / "runtime.out").read_text(errors="replace")
        except OSError:
            return iter(())
        return iter(text.splitlines())

    def find(self, run: RunRecord, attempt: AttemptRecord) -> Handle | None:
        wanted = {
            f"RELAUNCH_RUN_ID={run.run_id}".encode(),
            f"RELAUNCH_ATTEMPT={attempt.n}".encode(),
        }
        # A process still inside execve shows an empty environ for a moment (the new
        # image's environment is mapped after the old one is dropped): read those again,
        # for a few seconds from the end of the first pass (a loaded machine is slow at
        # both the pass and the exec; only a process caught mid-exec costs any wait).
        pids = [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]
        deadline: float | None = None
        while pids:
            execing = []
            for pid in pids:
                environ = _group_leader_environ(pid)
                if environ == set():
                    execing.append(pid)
                elif environ is not None and wanted <= environ:
                    return self._found(pid)
            deadline = deadline or time.monotonic() + 5.0
            if time.monotonic() > deadline:
                break
            pids = execing
            if pids:
                time.sleep(0.02)
        return None

    def _found(self, pid: int) -> Handle:
        return {"pid": pid, "start": proc_start_time(pid), "host": self.host, "where": self.host}


def _scratch_of(handle: Handle) -> Path | None:
    """The handle's scratch folder, when it is one under the scratch root (a handle
    read from the store never makes the backend read or delete anything else)."""
    scratch = Path(str(handle.get("scratch", "")))
    if not scratch.is_absolute():
        return None
    return scratch if scratch.resolve().parent.parent == scratch_root().resolve() else None


def _group_leader_environ(pid: int) -> set[bytes] | None:
    """The environment of a live process-group leader we may read (empty while it
    execs); None for any other process."""
    try:
        if os.getpgid(pid) != pid:
            return None
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except (OSError, ProcessLookupError):
        return None
    if not raw and proc_start_time(pid) is None:
        return None  # a zombie's environ is empty for good
    return {item for item in raw.split(b"\0") if item}
