"""Store keys of the layout in DESIGN.md §2. Every key built from a run id validates it.

Standard library only (the runtime uses it).
"""

from __future__ import annotations

import re

from relaunch.errors import UserInputError

RUN_ID_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_QUEUE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def shown(value: object, limit: int = 64) -> str:
    """``value`` quoted for an error message, cut to ``limit`` characters: a run id
    pasted with a whole log line should not fill the screen."""
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text)} characters)"


def valid_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
        raise UserInputError(
            f"invalid run id {shown(run_id)}",
            hint="a run id is 1-63 characters of a-z, 0-9 and '-', starting with a letter",
        )
    return run_id


def valid_queue(queue: str) -> str:
    if not _QUEUE_RE.match(queue):
        raise UserInputError(
            f"invalid queue name {shown(queue)}", hint="a queue name is 1-63 of a-z, 0-9, '-', '_'"
        )
    return queue


def run_prefix(run_id: str) -> str:
    return f"runs/{valid_run_id(run_id)}/"


def run_key(run_id: str) -> str:
    return run_prefix(run_id) + "run.json"


def lease_key(run_id: str) -> str:
    return run_prefix(run_id) + "lease.json"


def attempt_key(run_id: str, n: int) -> str:
    return run_prefix(run_id) + f"attempts/{int(n)}.json"


def result_key(run_id: str, n: int) -> str:
    return run_prefix(run_id) + f"attempts/{int(n)}.result.json"


def heartbeat_key(run_id: str) -> str:
    """Under ``live/``: one listing of ``live/`` gives every live run's heartbeat
    generation, so an agent reads a heartbeat only when it changed."""
    return live_prefix(run_id) + "heartbeat.json"


def legacy_heartbeat_key(run_id: str) -> str:
    """Where runtimes of a relaunch older than the live index write the heartbeat. Users
    install relaunch in their own images, so a job's runtime may be older than the agent
    watching it: agents read this key for runs that have no heartbeat under ``live/``."""
    return run_prefix(run_id) + "heartbeat.json"


def events_prefix(run_id: str) -> str:
    return run_prefix(run_id) + "events/"


def logs_prefix(run_id: str) -> str:
    return run_prefix(run_id) + "logs/"


def log_key(run_id: str, n: int) -> str:
    return logs_prefix(run_id) + f"{int(n)}.log"


def stop_key(run_id: str) -> str:
    return run_prefix(run_id) + ".stop"


def damaged_key(run_id: str) -> str:
    return run_prefix(run_id) + "damaged.json"


def preempt_key(run_id: str) -> str:
    return run_prefix(run_id) + "preempt.json"


def checkpoints_prefix(run_id: str) -> str:
    return run_prefix(run_id) + "checkpoints/"


def latest_checkpoint_key(run_id: str) -> str:
    return checkpoints_prefix(run_id) + "LATEST"


def queue_prefix(queue: str) -> str:
    return f"queues/{valid_queue(queue)}/"


def queue_bell_key(queue: str) -> str:
    """Rewritten after every new item: agents on a bucket read it (a cheap read) each
    tick and list the queue (a costlier list) only when it changed."""
    return queue_prefix(queue) + "bell"


def queue_item_key(queue: str, priority: int, enqueued_ns: int, run_id: str) -> str:
    return (
        queue_prefix(queue) + f"{int(priority)}-{int(enqueued_ns):020d}-{valid_run_id(run_id)}.json"
    )


#: the name of a queue item: priority, enqueue time, run id
QUEUE_ITEM_RE = re.compile(r"^[0-9]-[0-9]{20}-([a-z][a-z0-9-]{0,62})\.json$")


def is_queue_item(key: str) -> bool:
    """Whether ``key`` (under ``queues/<q>/``) is named as relaunch names queue items:
    anything else there (a stray file) is no run's and is passed over."""
    return QUEUE_ITEM_RE.match(key.rsplit("/", 1)[-1]) is not None


def run_id_of_queue_item(key: str) -> str:
    found = QUEUE_ITEM_RE.match(key.rsplit("/", 1)[-1])
    if found is None:
        raise ValueError(f"{key!r} is not a queue item")
    return found.group(1)


# -- the live-run index (runs/live.py) ------------------------------------------------

LIVE = "live/"
ENDED = "ended/"
INDEX_KEY = "index.json"


def live_prefix(run_id: str) -> str:
    return f"{LIVE}{valid_run_id(run_id)}/"


def live_key(run_id: str) -> str:
    """The index entry of a run that is not over."""
    return live_prefix(run_id) + "run"


def stop_signal_key(run_id: str) -> str:
    """A stop *signal* for agents' listings; ``stop_key`` stays the truth."""
    return live_prefix(run_id) + "stop"


def ended_key(run_id: str) -> str:
    """A run that ended recently (``relaunch ps``'s default view)."""
    return f"{ENDED}{valid_run_id(run_id)}"


def agent_key(agent_id: str) -> str:
    return f"agents/{agent_id}.json"
