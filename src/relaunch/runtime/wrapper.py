"""The runtime wrapper: restore, run the command, heartbeat, sync, ship logs, report.

    relaunch-runtime -- python train.py --epochs 10

Configuration comes from the environment contract (DESIGN.md §4) that every backend
sets: ``RELAUNCH_RUN_ID``, ``RELAUNCH_ATTEMPT``, ``RELAUNCH_STORE``,
``RELAUNCH_CHECKPOINT_DIR`` and ``RELAUNCH_RUNTIME`` (JSON settings from the job spec).

SIGTERM (spot preemption notice, stop, or watchdog) is forwarded to the command, which
gets the grace period to save a checkpoint; the runtime then commits that checkpoint,
ships the log and writes the attempt's result before the machine goes away.
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

from relaunch.errors import ObjectNotFound, RelaunchError
from relaunch.runs import keys
from relaunch.runtime.checkpoints import CheckpointSync, Superseded
from relaunch.runtime.gce_preemption import watch_preemption
from relaunch.runtime.progress import read_progress
from relaunch.runtime.scan import OutputScanner
from relaunch.runtime.secrets import Redactor, resolve_secrets
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
    checkpoints: bool = True
    fatal_patterns: list[str] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)  # NAME → reference, never values

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
        self.terminating: str | None = None  # the signal we forwarded, if any
        self.resumed_from: int | None = None
        self.superseded = False
        self.leader = is_leader(os.environ)
        self.instance = os.urandom(4).hex()  # tells a restarted container from this one
        self.external_term = False  # SIGTERM came from outside (not a fatal-output stop)
        self.last_activity = time.monotonic()  # output line or progress report
        self._progress_mtime = 0
        self._hb_lock = threading.Lock()
        self._shipped_size = -1
        self.redact = Redactor(())

    # -- the store side -----------------------------------------------------------

    def _is_current_attempt(self) -> bool:
        """Fencing: run only if the run record names this attempt and no stop exists."""
        try:
            record = json.loads(self.store.get(keys.run_key(self.cfg.run_id))[0])
        except ObjectNotFound:
            return False
        if self.store.stat(keys.stop_key(self.cfg.run_id)) is not None:
            return False
        return bool(int(record.get("attempt", 0)) == self.cfg.attempt)

    def heartbeat(self, phase: str = "running") -> None:
        if not self.leader:
            return
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
            # seconds the command has neither printed nor reported progress (runtime clock)
            "idle": round(time.monotonic() - self.last_activity, 1),
        }
        with self._hb_lock:
            self.store.put(
                keys.heartbeat_key(self.cfg.run_id),
                json.dumps({k: v for k, v in body.items() if v is not None}).encode(),
            )

    def ship_log(self) -> None:
        """Upload the output log when it grew since the last upload."""
        try:
            size = self.log_file.stat().st_size
        except FileNotFoundError:
            return
        if self.leader and size != self._shipped_size:
            self.store.upload_file(keys.log_key(self.cfg.run_id, self.cfg.attempt), self.log_file)
            self._shipped_size = size

    def sync_checkpoint(self, step: int | None) -> None:
        if not self.cfg.checkpoints or self.superseded or not self.leader:
            return
        try:
            seq = self.ckpt.commit(step)
        except Superseded as e:
            self.superseded = True
            self._say(f"checkpoint not committed: {e}")
            return
        if seq is not None:
            self._say(f"checkpoint {seq} committed (step {step})")

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
        secrets = resolve_secrets(self.cfg.secrets)
        self.redact = Redactor(secrets.values())
        env.update(secrets)
        env.update(
            {
                "RELAUNCH_CHECKPOINT_DIR": str(self.cfg.checkpoint_dir),
                "RELAUNCH_PROGRESS_FILE": str(self.progress_file),
                "RELAUNCH_RESUMED": "1" if self.resumed_from is not None else "0",
                "WANDB_RUN_ID": self.cfg.run_id,
                "WANDB_RESUME": "allow",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.resumed_from is not None:
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
        self.terminating = sig.name
        if self.child is not None and self.child.poll() is None:
            os.kill(self.child.pid, sig)

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
        self._keep_earlier_output()
        failed = self._earlier_failure()
        if failed is not None:
            return failed
        if self.cfg.checkpoints:
            self.resumed_from = self.ckpt.restore()
            if self.resumed_from is not None:
                self._say(f"restored checkpoint at step {self.resumed_from}")
        try:
            self.child = subprocess.Popen(
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
        self.heartbeat("running")
        pump = threading.Thread(target=self._pump_output, daemon=True)
        pump.start()
        # On a GCE VM the spot notice comes from the metadata server: it acts as SIGTERM.
        notice = watch_preemption(lambda: self._on_signal(signal.SIGTERM, None))
        exit_code = self._watch()
        if notice is not None:
            notice.stop()
        pump.join(timeout=5)
        return self._finish(exit_code)

    def _watch(self) -> int:
        assert self.child is not None
        now = time.monotonic()
        next_hb = now + self.cfg.heartbeat_interval
        next_log = now + LOG_SHIP_INTERVAL
        next_sync = now + self.cfg.sync_interval if self.cfg.sync_interval > 0 else float("inf")
        stable: dict[str, tuple[int, int]] | None = None
        reported_ckpt: int | None = None
        while (code := self.child.poll()) is None:
            time.sleep(TICK)
            now = time.monotonic()
            self._note_progress_activity()
            progress = read_progress(str(self.progress_file))
            ckpt_step = progress.get("checkpoint_step")
            if ckpt_step is not None and ckpt_step != reported_ckpt:
                reported_ckpt = ckpt_step
                self.sync_checkpoint(ckpt_step)
            elif now >= next_sync:
                # Without a report, commit only files unchanged since the last scan.
                snap = self.ckpt.snapshot()
                if snap == stable and self.ckpt.changed(snap):
                    self.sync_checkpoint(progress.get("step"))
                stable, next_sync = snap, now + self.cfg.sync_interval
            if now >= next_hb:
                self.heartbeat("running")
                next_hb = now + self.cfg.heartbeat_interval
            if now >= next_log:
                self.ship_log()
                next_log = now + LOG_SHIP_INTERVAL
        return code

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
            self.store.put(
                keys.result_key(self.cfg.run_id, self.cfg.attempt), json.dumps(result).encode()
            )
            self.heartbeat("not-started")
        return 2

    def _finish(self, exit_code: int) -> int:
        progress = read_progress(str(self.progress_file))
        self.sync_checkpoint(progress.get("step"))
        finding = self.scanner.classify(exit_code)
        reason, detail = finding.reason.value, finding.detail
        if self.external_term and self.scanner.fatal is None:
            reason, detail = "preempted", f"SIGTERM from outside; the command exited {exit_code}"
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
        self.store.put(
            keys.result_key(self.cfg.run_id, self.cfg.attempt), json.dumps(result).encode()
        )
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
