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

import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

from relaunch.errors import RelaunchError, StoreError
from relaunch.runtime.checkpoints import CheckpointSync, Restored, Unrestorable
from relaunch.runtime.commits import CommitPolicy
from relaunch.runtime.config import RuntimeConfig, is_leader
from relaunch.runtime.fence import Slot, claim_ttl
from relaunch.runtime.gce_preemption import watch_preemption
from relaunch.runtime.progress import read_progress
from relaunch.runtime.restore import Restorer
from relaunch.runtime.scan import OutputScanner
from relaunch.runtime.scratch import tidy_scratch
from relaunch.runtime.secrets import Redactor, resolve_secrets
from relaunch.runtime.signals import CommandGroup
from relaunch.runtime.storeside import StoreSide
from relaunch.runtime.waits import TICK, Wakeups
from relaunch.store import open_store
from relaunch.store.base import ObjectStore

LOG_SHIP_INTERVAL = 2.0
# The longest single wait: a machine that resumes after being frozen (suspended) finds
# its slot unconfirmed within this long, and pauses its command (fence.py).
MAX_WAIT = 1.0
# Exit status after a SIGTERM from outside (spot reclaim, cancel): never 0, so a platform
# that restarts or judges containers by their exit (Vertex AI) never takes it for success.
TERMINATED_EXIT = 128 + signal.SIGTERM


class Runtime(StoreSide):
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
        self._result_lost = False  # the store never took the result
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
        self.wakeups: Wakeups | None = None

    # -- the command side (the store side is in storeside.py) -------------------

    @property
    def commits_on(self) -> bool:
        return self.cfg.checkpoints and self.leader and not self.fenced

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
        if self.wakeups is not None:  # the loop now has a grace period to time
            self.wakeups.wake()

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
        self.wakeups = Wakeups(self.cfg.scratch)
        try:
            code = self._run()
        finally:
            self.wakeups.close()
        tidy_scratch(self.cfg, stored=self.all_stored())  # scratch.py
        return code

    def _run(self) -> int:
        assert self.wakeups is not None
        if not self._is_current_attempt():
            self._say(
                "this attempt is not the run's current one, or a stop was requested; not starting"
            )
            return 0
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.wakeups.catch_signals()
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
        """Wait for the command's end, waking only when something is due (waits.py)."""
        assert self.child is not None and self.wakeups is not None
        now = time.monotonic()
        next_hb = now + self.cfg.heartbeat_interval
        next_log = now + LOG_SHIP_INTERVAL
        self.wakeups.watch(self.child.pid)
        try:
            while (code := self.child.poll()) is None or self._group_lives_on():
                if code is not None:  # reaped; its pidfd would stay readable
                    self.wakeups.unwatch()
                self.wakeups.wait(self._next_due(next_hb, next_log) - time.monotonic())
                # At most one pass per TICK, as when this loop polled: reports that come
                # faster are committed together (the newest), not one upload each.
                self.wakeups.wait(now + TICK - time.monotonic())
                self._guard()
                if self.fenced:
                    return self.child.wait()
                now = time.monotonic()
                self._note_progress_activity()
                self.commits.tick(now, commit=self.commits_on)  # the completeness rule
                if self.notice_at is not None and now >= self.notice_at + self.cfg.grace_period:
                    self._say(
                        f"grace period ({self.cfg.grace_period:g}s) over: killing the command"
                    )
                    self.killed, self.notice_at = True, None
                    self.group.kill()
                if now >= next_hb:
                    self.check_fence()
                    self.heartbeat("running")
                    next_hb = now + self.cfg.heartbeat_interval
                if now >= next_log:
                    self.ship_log()
                    next_log = now + LOG_SHIP_INTERVAL
        finally:
            self.wakeups.unwatch()
        return code

    def _next_due(self, next_hb: float, next_log: float) -> float:
        """When the loop must look again (monotonic): the earliest scheduled thing, the
        moment the slot would go unconfirmed for half its TTL, at most MAX_WAIT away."""
        assert self.wakeups is not None
        now = time.monotonic()
        due = min(next_hb, next_log, self.commits.next_due(now), now + MAX_WAIT)
        if self.notice_at is not None:
            due = min(due, self.notice_at + self.cfg.grace_period)
        if self.leader and not self.fenced:
            due = min(due, now + self.slot.ttl / 2 - self.slot.unconfirmed_for())
        if self.paused or not self.wakeups.precise:
            due = min(due, now + TICK)  # retrying the store; or no pidfd/inotify here
        return max(due, now)

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
