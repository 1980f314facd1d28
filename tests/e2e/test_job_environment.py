"""What a local job's process sees of the agent's environment, and secret values kept
out of object keys even when a trainer puts one in a checkpoint file name."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import Env

SECRET = "tok-9f2c41d07e"

DUMP_ENV = (
    "import json, os; "
    "open(os.environ['OUT'], 'w').write(json.dumps(dict(os.environ)))"
)  # fmt: skip


def test_a_job_sees_its_own_env_not_the_agents_shell(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_SHELL_TOKEN", "not-for-the-job")
    monkeypatch.setenv("RELAUNCH_TEST_SECRET", SECRET)
    monkeypatch.setenv("LANG", "C.UTF-8")
    out = env.root / "seen.json"
    job = env.root / "envdump.yaml"
    job.write_text(
        f"name: envdump\ncommand: [python, -c, {json.dumps(DUMP_ENV)}]\n"
        f"env: {{OUT: '{out}', MODE: fast}}\n"
        "env_from_secret: {API_TOKEN: 'env:RELAUNCH_TEST_SECRET'}\n"
        "checkpoints: {enabled: false}\n"
    )
    rid = env.ws.submit(job)
    with env.agent_thread():
        env.wait_for(lambda: env.ws.repo.get_run(rid).state.terminal)
    assert env.ws.repo.get_run(rid).state.value == "SUCCEEDED", env.diagnose()
    seen = json.loads(out.read_text())
    assert "AGENT_SHELL_TOKEN" not in seen  # the agent's shell stays the agent's
    assert seen["MODE"] == "fast" and seen["API_TOKEN"] == SECRET  # declared env, secrets
    assert seen["RELAUNCH_RUN_ID"] == rid and seen["WANDB_RUN_ID"] == rid  # the contract
    assert seen["LANG"] == "C.UTF-8" and seen["PATH"]  # the small allow-list
    # nothing names a metadata server: the store's credentials are the agent machine's ADC
    assert "RELAUNCH_CREDENTIALS" not in seen


TRAINER = """
import os, pathlib, sys
folder = pathlib.Path(os.environ["RELAUNCH_CHECKPOINT_DIR"])
name = folder / f"model-{os.environ['API_TOKEN']}.pt"
if os.environ.get("RELAUNCH_RESUMED") == "1":
    sys.exit(0 if name.read_text() == "weights" else 4)
folder.mkdir(parents=True, exist_ok=True)
name.write_text("weights")
from relaunch.runtime import report
report(step=1, checkpoint=True)  # a complete checkpoint: committed though the command fails
sys.exit(3)  # fail once: attempt 2 must restore the file under its real name
"""


def test_a_secret_in_a_checkpoint_file_name_stays_out_of_keys(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAUNCH_TEST_SECRET", SECRET)
    (env.root / "t.py").write_text(TRAINER)
    job = env.root / "ckname.yaml"
    job.write_text(
        "name: ckname\ncommand: [python, t.py]\n"
        "env_from_secret: {API_TOKEN: 'env:RELAUNCH_TEST_SECRET'}\n"
        "heartbeat_interval: 0.2s\ncheckpoints: {sync_interval: 0}\n"
        "retry: {max_restarts_on_errors: 1, actions: {user-error: retry}}\n"
    )
    rid = env.ws.submit(job)
    with env.agent_thread():
        env.wait_for(lambda: env.ws.repo.get_run(rid).state.terminal, timeout=120)
    run = env.ws.repo.get_run(rid)
    assert run.state.value == "SUCCEEDED" and run.attempt == 2, env.diagnose()
    keys = [meta.key for meta in env.ws.store.list("").objects]
    assert any("checkpoints/" in k and "model-" in k for k in keys), keys
    for key in keys:
        assert SECRET not in key, key
        assert SECRET.encode() not in env.ws.store.get(key)[0], key
