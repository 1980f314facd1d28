"""The chaos monkey of the chaos tests: agents SIGKILLed (and replaced) or frozen for a
while, at random, always leaving one agent unharmed."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Callable


class Monkey:
    def __init__(
        self,
        rng: random.Random,
        agents: list[subprocess.Popen[bytes]],
        start: Callable[[], subprocess.Popen[bytes]],
        freeze_for: tuple[float, float],
    ) -> None:
        self.rng, self.agents, self.start, self.freeze_for = rng, agents, start, freeze_for
        self.frozen: dict[subprocess.Popen[bytes], float] = {}
        self.kills = self.freezes = 0

    def strike(self) -> None:
        """Wake agents whose freeze is over; then, maybe, kill or freeze one."""
        now = time.monotonic()
        for proc, until in list(self.frozen.items()):
            if now >= until:
                proc.send_signal(signal.SIGCONT)
                del self.frozen[proc]
        healthy = [a for a in self.agents if a.poll() is None and a not in self.frozen]
        if len(healthy) < 2 or self.rng.random() < 0.3:
            return  # one agent is always left unharmed at any moment
        victim = self.rng.choice(healthy)
        if self.rng.random() < 0.5:
            victim.kill()
            victim.wait()
            self.kills += 1
            self.agents.append(self.start())
        else:
            victim.send_signal(signal.SIGSTOP)
            self.frozen[victim] = now + self.rng.uniform(*self.freeze_for)
            self.freezes += 1

    def wake_all(self) -> None:
        for proc in self.frozen:
            proc.send_signal(signal.SIGCONT)
        self.frozen.clear()
