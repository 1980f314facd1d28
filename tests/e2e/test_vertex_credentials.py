"""The credentials of a Vertex AI run, end to end on the fake cloud: the runtime inside
the CustomJob signs its store requests with the job's service account, whose token its
VM's metadata server hands out — or with the user's key file when the job has one.

The fake Cloud Storage on 127.0.0.1 would be taken for an emulator that needs no
credentials, so the job's image starts the runtime with that check turned off
(``vertex.runtime``): the fake stands in for Google here, and the ``Authorization``
header that reaches it is what Google would see.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaunch.states import RunState
from tests.e2e.vertex_env import VertexEnv, vertex_cloud
from tests.fakegcp.fake import FakeGCP
from tests.fakegcp.server import Request, Response
from tests.store.test_gcs_credentials import USER_ACCOUNT, user_key_file

pytest_plugins = ["tests.fakegcp.fixtures"]

ACCOUNT = "trainer@fake-project.iam.gserviceaccount.com"
LAUNCH = (
    "import sys, relaunch.gcp.endpoints as e; e.is_local_emulator = lambda url: False; "
    "from relaunch.runtime.wrapper import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.fixture
def cloud(
    fake_gcp: FakeGCP, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[VertexEnv]:
    yield from vertex_cloud(fake_gcp, tmp_path, monkeypatch)


def signatures(fake: FakeGCP) -> list[str]:
    """The ``Authorization`` of every Cloud Storage request from now on, as sent (the
    agent in this process talks to the fake anonymously: those are left out)."""
    seen: list[str] = []

    def after(api: str, req: Request, res: Response) -> None:
        if api == "storage" and req.headers.get("authorization"):
            seen.append(req.headers["authorization"])

    fake.router.after = after
    return seen


def run_job(cloud: VertexEnv, **spec: object) -> str:
    vertex = {"run": {"service_account": ACCOUNT}, "runtime": ["python", "-c", LAUNCH, "--"]}
    rid = cloud.ws.submit(cloud.job(steps=10, vertex=vertex, **spec))
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.run(rid).state.terminal, timeout=120)
    run = cloud.run(rid)
    assert run.state is RunState.SUCCEEDED, run.detail
    assert run.step == 10
    return rid


def test_a_vertex_run_signs_with_the_jobs_service_account(cloud: VertexEnv) -> None:
    seen = signatures(cloud.fake)
    rid = run_job(cloud)
    job = cloud.fake.vertex.jobs[str(cloud.job_name(rid, 1))]
    env = {e["name"]: e["value"] for e in job.resource["jobSpec"]["workerPoolSpecs"][0][
        "containerSpec"]["env"]}  # fmt: skip
    assert env["RELAUNCH_CREDENTIALS"] == "metadata-server"  # the backend said where it runs
    assert job.metadata is not None and job.metadata.email == ACCOUNT
    # restore, heartbeats, the log and the result, all signed with that account's token,
    # fetched once for the whole attempt
    assert len(seen) >= 5 and set(seen) == {f"Bearer {job.metadata.token}"}
    assert job.metadata.tokens_issued == 1
    # the token went to Google's endpoint only: no record, event or log holds it
    store = cloud.ws.store
    for key in [m.key for m in store.list("").objects]:
        assert job.metadata.token.encode() not in store.get(key)[0], key
    assert job.metadata.token not in json.dumps(job.resource)


def test_a_users_key_in_the_job_wins_over_the_metadata_server(
    cloud: VertexEnv, tmp_path: Path
) -> None:
    key = user_key_file(cloud.fake, tmp_path / "keys" / "sa.json")
    seen = signatures(cloud.fake)
    rid = run_job(cloud, env={"GOOGLE_APPLICATION_CREDENTIALS": str(key)})
    job = cloud.fake.vertex.jobs[str(cloud.job_name(rid, 1))]
    assert len(seen) >= 5 and set(seen) == {f"Bearer {cloud.fake.oauth.token_for(USER_ACCOUNT)}"}
    assert job.metadata is not None and job.metadata.tokens_issued == 0
