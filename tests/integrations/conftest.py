from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.conftest import RuntimeEnv


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[RuntimeEnv]:
    env = RuntimeEnv(tmp_path)
    yield env
    for attempt in env.attempts:
        attempt.kill_group()
        if not attempt.out.closed:
            attempt.proc.wait(10)
            attempt.out.close()
