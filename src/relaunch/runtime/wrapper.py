"""The runtime wrapper: restore, run the command, heartbeat, sync, ship logs, report.

    relaunch-runtime -- python train.py --epochs 10

Configuration comes from the environment contract (DESIGN.md §4) that every backend
sets: ``RELAUNCH_RUN_ID``, ``RELAUNCH_ATTEMPT``, ``RELAUNCH_STORE``,
``RELAUNCH_CHECKPOINT_DIR`` and ``RELAUNCH_RUNTIME`` (JSON settings from the job spec).

SIGTERM (spot preemption notice, stop, or watchdog) is forwarded to the command's whole
process group (``signals.py``), which gets the grace period to save a checkpoint and is
SIGKILLed after it; the runtime commits checkpoints by the completeness rule
(``commits.py``), ships the log and writes the attempt's result before the machine goes
away. Restore and its fallbacks are in ``restore.py``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from relaunch.errors import ObjectNotFound, RelaunchError, StoreError
from relaunch.runs import keys
from relaunch.runtime.checkpoints import CheckpointSync, Restored, Unrestorable
from relaunch.runtime.commits import CommitPolicy
from relaunch.runtime.fence import Fenced, Slot, claim_ttl
from relaunch.runtime.gce_preemption import watch_preemption
from relaunch.runtime.progress import read_progress
from relaunch.runtime.restore import Restorer
from relaunch.runtime.scan import OutputScanner
from relaunch.runtime.secrets import Redactor, resolve_secrets
from relaunch.runtime.signals import CommandGroup
from relaunch.store import open_store
from relaunch.store.base import ObjectStore

LOG_SHIP_INTERVAL = 2.0
TICK = 0.1
# Exit status after a SIGTERM from outside (spot reclaim, cancel): never 0, so a platform
# that restarts or judges containers by their exit (Vertex AI) never takes it for success.
TERMINATED_EXIT = 128 + signal.SIGTERM


def is_leader(env: dict[str, str] | os._Environ[str]) -> bool:
    """Whether this replica writes heartbeats, checkpoints and the result. In a
    multi-replica Vertex job (``CLUSTER_SPEC``) only replica 0 of worker pool 0 does;
    the others restore the checkpoint and run the command."""
    try:
        task = json.loads(env.get("CLUSTER_SPEC") or "{}").get("task") or {}
    except ValueError:
        return True
    return task.get("type", "workerpool0") == "workerpool0" and int(task.get("index", 0)) == 0


@dataclass
class RuntimeConfig:
    run_id: str
    attempt: int
    store_url: str
    checkpoint_dir: Path
    scratch: Path
    heartbeat_interval: float = 10.0
    sync_interval: float = 30.0
    keep: int = 2
    grace_period: float = 25.0
    checkpoints: bool = True
    fatal_patterns: list[str] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)  # NAME → reference, never values
    token: str | None = None  # RELAUNCH_FENCE: the submission this runtime belongs to

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ[str] = os.environ) -> RuntimeConfig:
        missing = [
            v for v in ("RELAUNCH_RUN_ID", "RELAUNCH_ATTEMPT", "RELAUNCH_STORE") if not env.get(v)
        ]
        if missing:
            raise RelaunchError(
                f"relaunch-runtime: {', '.join(missing)} not set",
                hint="the runtime runs inside a job started by relaunch",
            )
        keys.valid_run_id(env["RELAUNCH_RUN_ID"])
        settings: dict[str, Any] = json.loads(env.get("RELAUNCH_RUNTIME") or "{}")
        scratch = Path(env.get("RELAUNCH_SCRATCH") or tempfile.mkdtemp(prefix="relaunch-"))
        # The job's own checkpoint folder (checkpoints.dir) wins over the default one.
        fixed = settings.pop("dir", None)
        ckpt = Path(fixed or env.get("RELAUNCH_CHECKPOINT_DIR") or scratch / "checkpoints")
        return cls(
            run_id=env["RELAUNCH_RUN_ID"],
            attempt=int(env["RELAUNCH_ATTEMPT"]),
            store_url=env["RELAUNCH_STORE"],
            checkpoint_dir=ckpt,
            scratch=scratch,
            token=env.get("RELAUNCH_FENCE") or None,
            **settings,
        )


class Runtime:
    def __init__(
        self, config: RuntimeConfig, command: list[str], store: ObjectStore | None = None
    ) -> None:
        self.cfg = config
        self.command = command
        self.store = store or open_store(config.store_url)
        self.ckpt = CheckpointSync(
            self.store, config.run_id, config.attempt, config.checkpoint_dir, config.keep
        )
        self.scanner = OutputScanner(config.fatal_patterns)
        self.progress_file = config.scratch / "progress.json"
        self.log_file = config.scratch / "output.log"
        self.child: subprocess.Popen[bytes] | None = None
        self.group = CommandGroup()
        self.terminating: str | None = None  # the signal we forwarded, if any
        self.notice_at: float | None = None  # when the command got the notice (monotonic)
        self.killed = False  # the grace period ran out and the group was SIGKILLed
        self.resumed_from: int | None = None
        self.restored: Restored | None = None
        self.leader = is_leader(os.environ)
        self.commits = CommitPolicy(self.ckpt, self.progress_file, config.sync_interval, self._say)
        self.restorer = Restorer(
            self.ckpt, self.store, config.run_id, config.attempt, self._say, self.leader
        )
        self.instance = os.urandom(4).hex()  # tells a restarted container from this one
        self.external_term = False  # SIGTERM came from outside (not a fatal-output stop)
        self.last_activity = time.monotonic()  # output line or progress report
        self._progress_mtime = 0
        self._hb_lock = threading.Lock()
        self._shipped_size = -1
        self.redact = Redactor(())
        self.slot = Slot(
            self.store,
            config.run_id,
            config.attempt,
            config.token,
            claim_ttl(config.heartbeat_interval),
        )
        self.fenced = False  # superseded while running: the command was ended, write nothing
        self.paused = False  # the command is stopped until the slot is confirmed again
        self._store_trouble = ""  # the last store error said (each is said once)

    # -- the store side -----------------------------------------------------------

    def _is_current_attempt(self) -> bool:
        """Fencing: run only if the records name this attempt and submission, and no stop
        exists (the store unreachable: ask again for a while)."""
        deadline = time.monotonic() + 120
        while True:
            try:
                if self.store.stat(keys.stop_key(self.cfg.run_id)) is not None:
                    return False
                return self.slot.current(starting=True)
            except StoreError as e:
                self._store_down(e)
                if time.monotonic() > deadline:
                    raise
                time.sleep(2.0)

    def _store_down(self, e: StoreError) -> None:
        if str(e) != self._store_trouble:
            self._store_trouble = str(e)
            self._say(f"the store failed ({e}); retrying")

    def _heartbeat_body(self, phase: str) -> bytes:
        progress = read_progress(str(self.progress_file))
        body = {
            "time": time.time(),
            "attempt": self.cfg.attempt,
            "phase": phase,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "step": progress.get("step"),
            "total": progress.get("total"),
            "resumed_from": self.resumed_from,
            "instance": self.instance,
            "token": self.cfg.token,
            # seconds the command has neither printed nor reported progress (runtime clock)
            "idle": round(time.monotonic() - self.last_activity, 1),
        }
        return json.dumps({k: v for k, v in body.items() if v is not None}).encode()

    def heartbeat(self, phase: str = "running") -> None:
        """Write the heartbeat through the slot; a slot taken by another runtime fences
        this one (its command is ended), a store error is said once and tried again."""
        if not self.leader or self.fenced:
            return
        with self._hb_lock:
            try:
                self.slot.write(self._heartbeat_body(phase))
            except Fenced as e:
                self._fence(str(e))
            except StoreError as e:
                self._store_down(e)
            else:
                self._store_trouble = ""

    def check_fence(self) -> None:
        """Whether this runtime's submission is still the attempt's (read each heartbeat)."""
        if not self.leader or self.fenced:
            return
        try:
            current = self.slot.current()
        except StoreError as e:
            self._store_down(e)
            return
        if not current:
            self._fence("another submission of this attempt replaced this one")

    def _fence(self, why: str) -> None:
        """Superseded: end the command at once and write nothing more as this attempt."""
        self.fenced = True
        self._say(f"{why}: ending the command; this runtime writes nothing more")
        self._signal_command(signal.SIGKILL)
        self.slot.release(self._heartbeat_body("fenced"))

    def _guard(self) -> None:
        """Pause the command while the slot is unconfirmed for half its TTL (store
        outage, or this machine was frozen); go on once it is confirmed again."""
        if not self.leader or self.fenced:
            return
        if self.slot.unconfirmed_for() > self.slot.ttl / 2:
            if not self.paused:
                self._signal_command(signal.SIGSTOP)
                self.paused = True
                self._say("the heartbeat could not be confirmed: command paused until it is")
            self.check_fence()
            self.heartbeat("running")
        if self.paused and not self.fenced and self.slot.unconfirmed_for() < self.slot.ttl / 2:
            self._signal_command(signal.SIGCONT)
            self.paused = False
            self._say("heartbeat confirmed: command resumed")

    def _signal_command(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the command and everything it started (its process group)."""
        if self.child is not None:
            self.group.send(sig)  # signals.py: never stops or kills the runtime itself

    def ship_log(self) -> None:
        """Upload the output log when it grew since the last upload."""
        try:
            size = self.log_file.stat().st_size
        except FileNotFoundError:
            return
        if self.leader and not self.fenced and size != self._shipped_size:
            try:
                self.store.upload_file(
                    keys.log_key(self.cfg.run_id, self.cfg.attempt), self.log_file
                )
            except StoreError as e:
                self._store_down(e)
                return
            self._shipped_size = size

    @property
    def commits_on(self) -> bool:
        return self.cfg.checkpoints and self.leader and not self.fenced

    def _earlier_failure(self) -> int | None:
        """The platform restarted this container after the command itself failed
        (Vertex restarts a worker that exits non-zero): running it again would fail
        again at a GPU's price. Exit at once with the same status, so the platform gives
        up and the agent decides, by the job's retry policy."""
        try:
            data, _ = self.store.get(keys.result_key(self.cfg.run_id, self.cfg.attempt))
        except ObjectNotFound:
            return None
        earlier = json.loads(data)
        if earlier.get("reason") != "user-error":
            return None  # e.g. preempted: this restart is the recovery
        self._say(
            "the command already failed in this attempt "
            f"({earlier.get('detail') or 'user-error'}); not running it again"
        )
        self.ship_log()
        code = earlier.get("exit_code")
        return int(code) if isinstance(code, int) and code > 0 else 1

    def _keep_earlier_output(self) -> None:
        """A container restarted in place (same attempt) continues the attempt's log
        instead of replacing it."""
        if not self.leader or self.log_file.exists():
            return
        try:
            data, _ = self.store.get(keys.log_key(self.cfg.run_id, self.cfg.attempt))
        except ObjectNotFound:
            return
        self.log_file.write_bytes(data)
        self._shipped_size = len(data)

    def _say(self, message: str) -> None:
        line = f"[relaunch] {message}\n"
        sys.stderr.write(line)
        with open(self.log_file, "a") as f:
            f.write(line)

    # -- the command side ---------------------------------------------------------

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        secrets = self.ckpt.secrets
        self.redact = Redactor(secrets.values())
        env.update(secrets)
        env.update(
            {
                "RELAUNCH_CHECKPOINT_DIR": str(self.cfg.checkpoint_dir),
                "RELAUNCH_PROGRESS_FILE": str(self.progress_file),
                "RELAUNCH_RESUMED": "1" if self.restored is not None else "0",
                "WANDB_RUN_ID": self.cfg.run_id,
                "WANDB_RESUME": "allow",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.pop("RELAUNCH_RESUME_STEP", None)
        if self.resumed_from is not None:  # the step the restored checkpoint holds
            env["RELAUNCH_RESUME_STEP"] = str(self.resumed_from)
        env.pop("RELAUNCH_RUNTIME", None)
        return env

    def _pump_output(self) -> None:
        assert self.child is not None and self.child.stdout is not None
        with open(self.log_file, "ab") as log:
            for line in iter(self.child.stdout.readline, b""):
                raw = self.redact(line)  # a secret the command prints is not kept anywhere
                self.last_activity = time.monotonic()
                log.write(raw)
                log.flush()
                sys.stdout.buffer.write(raw)
                sys.stdout.flush()
                self.scanner.feed(raw.decode("utf-8", "replace"))
                if self.scanner.fatal is not None and self.terminating is None:
                    self._forward(signal.SIGTERM)

    def _forward(self, sig: signal.Signals) -> None:
        self.terminating = sig.name  # set first: the group signal reaches us too
        self.notice_at = time.monotonic()
        if self.child is not None and self.child.poll() is None:
            self.group.signal_group(sig)
            if self.paused:  # a stopped command cannot save: let it handle the signal
                self._signal_command(signal.SIGCONT)
                self.paused = False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.terminating is None:
            self.external_term = True
            self._say(
                f"{signal.Signals(signum).name} received: forwarding to the command "
                "(save a checkpoint now)"
            )
            self._forward(signal.Signals(signum))

    # -- main ---------------------------------------------------------------------

    def run(self) -> int:
        self.cfg.scratch.mkdir(parents=True, exist_ok=True)
        if not self._is_current_attempt():
            self._say(
                "this attempt is not the run's current one, or a stop was requested; not starting"
            )
            return 0
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        if self.leader and not self.slot.acquire(
            lambda: self._heartbeat_body("starting"), lambda: self.terminating is not None
        ):
            self._say("another submission of this attempt replaced this one; not starting")
            return 0
        self._keep_earlier_output()
        failed = self._earlier_failure()
        if failed is not None:
            return failed
        try:  # before the restore: checkpoint file names may hold a secret (masked in keys)
            self.ckpt.secrets = resolve_secrets(self.cfg.secrets)
        except RelaunchError as e:  # a secret that cannot be read, say
            return self._fail_to_start(getattr(e, "reason", "user-error"), str(e))
        if self.cfg.checkpoints:
            try:  # the folder ends up holding exactly one committed checkpoint, or nothing
                self._set_restored(self.restorer.restore())
            except StoreError as e:  # the store, not the checkpoint: the agent retries
                return self._fail_to_start("transient", f"cannot restore the checkpoint: {e}")
            except (Unrestorable, RelaunchError) as e:
                return self._fail_to_start("user-error", str(e))
        while True:
            try:
                self.child = self.group.start(
                    self.command,
                    env=self._child_env(),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            except RelaunchError as e:  # a secret that cannot be read, say
                return self._fail_to_start(getattr(e, "reason", "user-error"), str(e))
            except OSError as e:
                return self._fail_to_start(
                    "user-error", f"cannot start the command {self.command[0]!r}: {e.strerror or e}"
                )
            self.commits.start(time.monotonic())
            self.heartbeat("running")
            pump = threading.Thread(target=self._pump_output, daemon=True)
            pump.start()
            # On a GCE VM the spot notice comes from the metadata server: it acts as SIGTERM.
            notice = watch_preemption(lambda: self._on_signal(signal.SIGTERM, None))
            exit_code = self._watch()
            if notice is not None:
                notice.stop()
            pump.join(timeout=5)
            older = self._fall_back(exit_code)
            if older is None:
                return self._finish(exit_code)
            self._set_restored(older)

    def _set_restored(self, restored: Restored | None) -> None:
        self.restored = restored
        self.resumed_from = restored.step if restored is not None else None

    def _fall_back(self, exit_code: int) -> Restored | None:
        """After the command failed at once on a restored checkpoint: the previous
        committed checkpoint, restored, to run the command again from (restore.py)."""
        restored = self.restored
        if restored is None or exit_code == 0 or self.terminating or not self.commits_on:
            return None
        step = read_progress(str(self.progress_file)).get("step")
        if self.commits.commits or (step is not None and step > (restored.step or -1)):
            return None  # it got going: the checkpoint loaded
        try:
            older = self.restorer.failed_at_once(exit_code, restored)
        except RelaunchError as e:
            self._say(str(e))
            return None
        if older is not None:
            self.progress_file.unlink(missing_ok=True)
        return older

    def _watch(self) -> int:
        assert self.child is not None
        now = time.monotonic()
        next_hb = now + self.cfg.heartbeat_interval
        next_log = now + LOG_SHIP_INTERVAL
        while (code := self.child.poll()) is None or self._group_lives_on():
            time.sleep(TICK)
            self._guard()
            if self.fenced:
                return self.child.wait()
            now = time.monotonic()
            self._note_progress_activity()
            self.commits.tick(now, commit=self.commits_on)  # the completeness rule
            if self.notice_at is not None and now > self.notice_at + self.cfg.grace_period:
                self._say(f"grace period ({self.cfg.grace_period:g}s) over: killing the command")
                self.killed, self.notice_at = True, None
                self.group.kill()
            if now >= next_hb:
                self.check_fence()
                self.heartbeat("running")
                next_hb = now + self.cfg.heartbeat_interval
            if now >= next_log:
                self.ship_log()
                next_log = now + LOG_SHIP_INTERVAL
        return code

    def _group_lives_on(self) -> bool:
        """The command exited but processes it started live on (a launcher that died
        before its trainer): they get the notice and the grace period, not orphanhood."""
        if not self.group.members():
            return False
        if self.terminating is None:
            self._say("the command exited but its processes live on: sending them SIGTERM")
            self._forward(signal.SIGTERM)
        return True

    def _note_progress_activity(self) -> None:
        try:
            mtime = self.progress_file.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime != self._progress_mtime:
            self._progress_mtime, self.last_activity = mtime, time.monotonic()

    def _fail_to_start(self, reason: str, detail: str) -> int:
        """The command could not start: say why in the log and in the attempt's result,
        so the agent shows the cause instead of a machine that vanished."""
        self._say(detail)
        self.ship_log()
        if self.leader:
            result = {"attempt": self.cfg.attempt, "reason": reason, "detail": detail,
                      "last_lines": [detail], "ended_at": time.time()}  # fmt: skip
            self._put_result(result)
            self.heartbeat("not-started")
        return 2

    def _put_result(self, result: dict[str, Any], patience: float = 300.0) -> None:
        """Write the attempt's result, waiting out a store outage for a while (the agent
        concludes an attempt without a result as lost, and retries it)."""
        if self.fenced:
            return
        data = json.dumps(result).encode()
        deadline = time.monotonic() + patience
        while True:
            try:
                self.store.put(keys.result_key(self.cfg.run_id, self.cfg.attempt), data)
                return
            except StoreError as e:
                self._store_down(e)
                if time.monotonic() > deadline:
                    self._say("the result could not be written; the agent will retry the attempt")
                    return
                time.sleep(2.0)

    def _finish(self, exit_code: int) -> int:
        if self.fenced:
            return 0  # superseded: the attempt's records belong to the other submission
        progress = read_progress(str(self.progress_file))
        killed = self.killed or exit_code < 0 or exit_code >= 128
        self.commits.at_exit(exit_code, self.terminating is not None, killed, self.commits_on)
        finding = self.scanner.classify(exit_code)
        reason, detail = finding.reason.value, finding.detail
        if self.external_term and self.scanner.fatal is None:
            reason, detail = "preempted", f"SIGTERM from outside; the command exited {exit_code}"
        elif exit_code == -signal.SIGKILL and self.terminating is None:
            reason, detail = (
                "killed",
                "the command was killed by SIGKILL from outside relaunch "
                "(the kernel's out-of-memory killer does this)",
            )
        self.ship_log()
        if not self.leader:
            return TERMINATED_EXIT if self.external_term else exit_code
        result = {
            "attempt": self.cfg.attempt,
            "exit_code": exit_code,
            "signal": self.terminating,
            "reason": reason,
            "detail": detail,
            "last_lines": list(self.scanner.last_lines),
            "final_step": progress.get("step"),
            "ended_at": time.time(),
        }
        self._put_result(result)
        self.heartbeat("exited")
        return TERMINATED_EXIT if self.external_term else exit_code


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        sys.stderr.write("usage: relaunch-runtime -- COMMAND [ARGS...]\n")
        return 2
    try:
        return Runtime(RuntimeConfig.from_env(), args).run()
    except RelaunchError as e:
        sys.stderr.write(f"relaunch-runtime: {e}\n")
        return 2
