"""A sampling profiler for code run in the main thread: where its wall time goes, with
little distortion. (cProfile's cost per call weighs on many small Python calls far more
than on one call into C, so its ranking misleads; a sampler thread is biased too: it
gets the GIL only where the sampled thread lets go of it, at I/O.)

A real-time interval timer (``ITIMER_REAL``) interrupts the process every ``interval``
seconds; the handler runs in the main thread as soon as the current bytecode (or call
into C) is over, and counts each function on that stack once (inclusive) and the
innermost one (own). Samples count only while ``active`` is true.
"""

from __future__ import annotations

import signal
from collections import Counter
from types import FrameType
from typing import Any


def _where(frame: FrameType) -> str:
    code = frame.f_code
    path = code.co_filename.split("/site-packages/")[-1].split("/src/")[-1]
    return f"{path}:{code.co_firstlineno}({code.co_name})"


class Sampler:
    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.active = False
        self.samples = 0
        self.inclusive: Counter[str] = Counter()
        self.own: Counter[str] = Counter()

    def __enter__(self) -> Sampler:
        signal.signal(signal.SIGALRM, self._sample)
        signal.setitimer(signal.ITIMER_REAL, self.interval, self.interval)
        return self

    def __exit__(self, *_: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)

    def _sample(self, _signum: int, frame: FrameType | None) -> None:
        if not self.active or frame is None:
            return
        self.samples += 1
        self.own[_where(frame)] += 1
        seen: set[str] = set()
        while frame is not None:
            where = _where(frame)
            if where not in seen:
                seen.add(where)
                self.inclusive[where] += 1
            frame = frame.f_back

    def report(self, wall_s: float, ticks: int, top: int = 25) -> dict[str, Any]:
        """The functions with the largest share of samples, as ms per tick (that share of
        the sampled ticks' wall time ``wall_s``)."""
        per_sample = wall_s / max(1, self.samples) / max(1, ticks) * 1000

        def table(counts: Counter[str]) -> list[dict[str, Any]]:
            return [
                {
                    "function": name,
                    "share": round(n / max(1, self.samples), 3),
                    "ms_per_tick": round(n * per_sample, 1),
                }
                for name, n in counts.most_common(top)
            ]

        return {
            "samples": self.samples,
            "ticks": ticks,
            "by_own_time": table(self.own),
            "by_inclusive_time": table(self.inclusive),
        }
