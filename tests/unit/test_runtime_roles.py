"""Which replica of a multi-replica job leads (heartbeats, checkpoints, the result)."""

from __future__ import annotations

import json

import pytest

from relaunch.runtime.config import is_leader


def cluster(kind: str, index: int) -> dict[str, str]:
    spec = {"cluster": {"workerpool0": ["h0:2222"], "workerpool1": ["h1:2222", "h2:2222"]},
            "task": {"type": kind, "index": index}}  # fmt: skip
    return {"CLUSTER_SPEC": json.dumps(spec)}


@pytest.mark.parametrize(
    ("env", "leads"),
    [
        ({}, True),  # one replica, or not on Vertex: the only one
        (cluster("workerpool0", 0), True),
        (cluster("workerpool1", 0), False),
        (cluster("workerpool1", 1), False),
        ({"CLUSTER_SPEC": "not json"}, True),
    ],
)
def test_only_replica_0_of_pool_0_leads(env: dict[str, str], leads: bool) -> None:
    assert is_leader(env) is leads
