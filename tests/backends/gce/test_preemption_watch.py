"""The runtime's instance/preempted watch, against a real metadata server on 127.0.0.1
(the fake's per-instance one)."""

from __future__ import annotations

import threading

from relaunch.runtime.gce_preemption import watch_preemption
from tests.fakegcp.fixtures import wait_until
from tests.fakegcp.metadata import MetadataServer


def test_the_notice_is_heard_once_and_only_on_gce() -> None:
    server = MetadataServer({"name": "vm", "id": "1", "zone": "zones/z"}, "p")
    server.start()
    try:
        env = {"RELAUNCH_ON_GCE": "1", "GCE_METADATA_HOST": server.host}
        heard: list[int] = []
        assert watch_preemption(lambda: heard.append(1), {"GCE_METADATA_HOST": server.host}) is None
        watch = watch_preemption(lambda: heard.append(1), env)
        assert watch is not None
        threading.Event().wait(0.3)
        assert heard == []  # a long poll, not a notice
        server.preempt()
        wait_until(lambda: heard, timeout=20)
        threading.Event().wait(0.3)
        assert heard == [1]
    finally:
        server.stop()
