"""`relaunch resume` of a Vertex AI run on the fake cloud: a new CustomJob for the next
attempt, the checkpoint restored from the bucket, the same W&B run."""

from __future__ import annotations

import json

from relaunch.backends.vertex.body import ATTEMPT_LABEL
from relaunch.states import Reason, RunState
from tests.e2e.test_vertex_runs import cloud
from tests.e2e.vertex_env import VertexEnv

pytest_plugins = ["tests.fakegcp.fixtures"]
__all__ = ["cloud"]


def test_a_failed_vertex_run_resumed_with_a_fix_runs_a_new_custom_job(cloud: VertexEnv) -> None:
    rid = cloud.ws.submit(cloud.job(steps=30, trainer_args=["--raise-at", "13"]))
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.run(rid).state.terminal)
        assert cloud.run(rid).state is RunState.FAILED
        resumed = cloud.ws.resume(rid, cloud.job(steps=30))  # the fixed job file
        assert resumed.checkpoint is not None and resumed.checkpoint.step == 10
        cloud.wait_for(lambda: cloud.run(rid).state.terminal, timeout=90)
    run = cloud.run(rid)
    assert run.state is RunState.SUCCEEDED and run.attempt == 2 and run.step == 30, run.detail
    first, second = cloud.attempts(rid)
    assert first.reason is Reason.USER_ERROR and second.reason is Reason.SUCCEEDED
    assert second.first_step == 10
    creates = cloud.creates()
    assert len(creates) == 2  # one CustomJob per attempt
    job = cloud.fake.vertex.jobs[cloud.job_name(rid, 2) or ""]
    assert job.resource["labels"][ATTEMPT_LABEL] == "2"
    starts = {
        int(p.name.split(".")[1]): json.loads(p.read_text())
        for p in cloud.markers.glob(f"{rid}.*.start")
    }
    assert starts[2]["step"] == 10 and starts[2]["resumed"] == "1"
    assert starts[1]["wandb"] == starts[2]["wandb"] == rid


def test_a_stopped_vertex_run_resumes_on_the_bucket_store(cloud: VertexEnv) -> None:
    """`.stop` on the bucket is cleared by generation; the run goes on where its SIGTERM
    checkpoint left it."""
    rid = cloud.ws.submit(cloud.job(steps=60, step_time=0.05))
    with cloud.agent_thread():
        cloud.wait_for(lambda: cloud.step(rid) >= 10)
        assert cloud.ws.stop(rid, wait=60) is RunState.STOPPED
        stopped_at = cloud.run(rid).step or 0
        resumed = cloud.ws.resume(rid)
        assert resumed.checkpoint is not None and resumed.checkpoint.step == stopped_at
        cloud.wait_for(lambda: cloud.run(rid).state.terminal, timeout=90)
    run = cloud.run(rid)
    assert run.state is RunState.SUCCEEDED and run.attempt == 2, run.detail
    assert cloud.attempts(rid)[1].first_step == stopped_at >= 10
    assert len(cloud.creates()) == 2
