"""What can still be shown of a run whose record cannot be read (damaged, or gone): the
objects the store holds under its folder, found by listing — `relaunch ps` lists such a
run as DAMAGED, and its logs and events are still there to read."""

from __future__ import annotations

from typing import TYPE_CHECKING

from relaunch.errors import DamagedRecord, NotFoundError, RelaunchError, UserInputError
from relaunch.runs import keys

if TYPE_CHECKING:
    from relaunch.runs.repo import RunRepo


def why_unreadable(run_id: str, e: RelaunchError) -> str:
    """What is wrong with the run's record, in a few words."""
    return e.message if isinstance(e, DamagedRecord) else f"{keys.run_key(run_id)} is missing"


def log_attempt(
    repo: RunRepo, run_id: str, attempt: int | None, unreadable: RelaunchError, *, cloud: bool
) -> int:
    """Which attempt's stored log to show of a run whose record is ``unreadable``:
    ``attempt``, or the latest logged. Raises ``unreadable`` when the store holds no log
    of the run (an unknown run id, say); a one-line error for ``cloud`` (the platform's
    log is found through the record) or an attempt with no log."""
    logged = repo.logged_attempts(run_id)
    if not logged:
        raise unreadable
    why, listed = why_unreadable(run_id, unreadable), ", ".join(map(str, logged))
    if cloud:
        raise UserInputError(
            f"{why}: the platform's log needs the run's record",
            hint=f"drop --cloud to see the logs the store holds (attempts {listed})",
        )
    n = attempt if attempt is not None else logged[-1]
    if n not in logged:
        raise NotFoundError(
            f"{why}, and the store holds no log of attempt {n}",
            hint=f"it holds logs of attempts {listed} (--attempt N)",
        )
    return n
