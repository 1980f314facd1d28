"""Inside a GCE VM: wait for the spot preemption notice on the metadata server.

Google sets ``instance/preempted`` to ``TRUE`` about 30 s before it reclaims a spot VM.
A long poll (``?wait_for_change=true``) hears it at once; the runtime then forwards
SIGTERM to the trainer, which saves its checkpoint, and commits it before the VM is
gone. The metadata server is ``GCE_METADATA_HOST`` (the variable google-auth honours)
or ``metadata.google.internal``. Standard library only: the runtime starts fast.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping

DEFAULT_HOST = "metadata.google.internal"
#: seconds one long poll may last (Google's metadata server allows more; short polls
#: keep a dead metadata server from hiding a notice for long)
WAIT = 30
RETRY = 1.0


def on_gce(env: Mapping[str, str]) -> bool:
    """Whether the backend said this runtime runs in a GCE VM."""
    return env.get("RELAUNCH_ON_GCE") == "1"


def preempted_url(env: Mapping[str, str]) -> str:
    host = env.get("GCE_METADATA_HOST") or DEFAULT_HOST
    return f"http://{host}/computeMetadata/v1/instance/preempted"


class PreemptionWatch:
    """A daemon thread that calls ``on_notice`` once, when the VM is preempted."""

    def __init__(self, url: str, on_notice: Callable[[], None]) -> None:
        self.url = url
        self.on_notice = on_notice
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gce-preemption", daemon=True)

    def start(self) -> PreemptionWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _read(self, etag: str) -> tuple[str, str]:
        import urllib.request  # here: off GCE the runtime never loads the HTTP stack

        query = f"?wait_for_change=true&timeout_sec={WAIT}"
        if etag:
            query += f"&last_etag={etag}"
        request = urllib.request.Request(self.url + query, headers={"Metadata-Flavor": "Google"})
        with urllib.request.urlopen(request, timeout=WAIT + 10) as response:
            return response.read().decode().strip(), response.headers.get("ETag", "")

    def _run(self) -> None:
        etag = ""
        while not self._stop.is_set():
            try:
                value, etag = self._read(etag)
            except (OSError, ValueError):  # urllib's URLError is an OSError
                time.sleep(RETRY)  # the metadata server restarts with its host: ask again
                continue
            if value.upper() == "TRUE":
                if not self._stop.is_set():
                    self.on_notice()
                return


def watch_preemption(
    on_notice: Callable[[], None], env: Mapping[str, str] = os.environ
) -> PreemptionWatch | None:
    """Start watching when running on GCE; None elsewhere."""
    if not on_gce(env):
        return None
    return PreemptionWatch(preempted_url(env), on_notice).start()
