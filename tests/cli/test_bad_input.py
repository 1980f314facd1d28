"""Bad input, as a new user meets it: every case is refused with one line that says what
is wrong and what to do, exit code 2, and nothing written — no store, no stray folder.

A new case joins in one line of CASES: (id, files, argv, message fragment[, env]).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tests.cli.harness import Fifo, Link, Project

JOB = "name: demo\ncommand: [python, train.py]\n"
TOML = "[project]\nname = 'demo'\n"
TRAIN = {"train.py": "print('hi')\n"}


def job(extra: str = "", base: str = JOB) -> dict[str, str | bytes | Link | Fifo]:
    return {"job.yaml": base + extra, **TRAIN}


def laughs(levels: int = 9) -> str:
    """The "billion laughs": each level lists the previous one ten times."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return JOB + "labels: {x: y}\n" + "\n".join(lines) + "\n"


TEMPLATED = (
    "name: demo\ntemplates:\n  lr: {type: float, minimum: 0, maximum: 1, default: 0.1}\n"
    "command: [python, train.py, --lr, '{{lr}}']\n"
)


VERTEX_ENV = (
    "name: v\nbackend: vertex\nvertex:\n  spec:\n    worker_pool_specs:\n"
    "      - machine_spec: {machine_type: n1-standard-4}\n"
    "        container_spec:\n          image_uri: img\n          command: [python]\n"
    "          env: [{name: WANDB_RUN_ID, value: '%s'}]\n"
)


@dataclass(frozen=True)
class Case:
    id: str
    files: dict[str, str | bytes | Link | Fifo]
    argv: tuple[str, ...]
    fragment: str
    env: dict[str, str] = field(default_factory=dict)


GS = {"RELAUNCH_STORE": "gs://relaunch-no-creds/store"}
NO_CREDS = "no usable Google Cloud credentials"

# fmt: off
CASES = [
    # -- store URLs -------------------------------------------------------------------
    Case("s3-store-flag", {}, ("ps", "--store", "s3://bucket/x"), "'s3://' stores are not"),
    Case("s3-store-env", {}, ("ps",), "'s3://' stores are not", {"RELAUNCH_STORE": "s3://b/x"}),
    Case("s3-store-run", job(), ("run", "job.yaml", "--store", "s3://b/x"), "'s3://' stores"),
    Case("s3-store-toml", {"relaunch.toml": "[store]\nurl = 's3://b/x'\n"}, ("ps",), "store.url"),
    Case("empty-store-toml", {"relaunch.toml": "[store]\nurl = ''\n", **job()},
         ("run", "job.yaml"), "store.url: the store URL is empty"),
    Case("empty-store-flag", {}, ("ps", "--store", ""), "the store URL is empty"),
    Case("gs-no-bucket", {}, ("ps", "--store", "gs://"), "names no bucket"),
    Case("store-is-a-file", {"afile": "x"}, ("ps", "--store", "afile"), "is a file, not a folder"),
    Case("store-under-a-file", {"afile": "x"}, ("ps", "--store", "afile/s"), "is a file, not"),
    Case("store-file-env", {"afile": "x"}, ("ps",), "is a file", {"RELAUNCH_STORE": "afile"}),
    Case("store-file-run", {"afile": "x", **job()}, ("run", "job.yaml", "--store", "afile"),
         "is a file, not a folder"),
    Case("ps-no-such-store", {}, ("ps", "--store", "typo"), "no store at "),
    Case("ps-no-such-store-env", {}, ("ps", "--json"), "no store at ", {"RELAUNCH_STORE": "typo"}),
    Case("gs-no-creds-run", job(), ("run", "job.yaml"), NO_CREDS, GS),
    Case("gs-no-creds-ps", {}, ("ps",), NO_CREDS, GS),
    Case("gs-no-creds-status", {}, ("status", "some-run"), NO_CREDS, GS),
    Case("gs-no-creds-agent", {}, ("agent", "--exit-when-idle", "0"), NO_CREDS, GS),
    # -- inputs that hung the CLI ---------------------------------------------------------
    Case("job-is-dev-zero", {}, ("run", "/dev/zero"), "is not a regular file"),
    Case("job-links-dev-zero", {"job.yaml": Link("/dev/zero")}, ("run", "job.yaml"),
         "is not a regular file"),
    Case("toml-links-dev-zero", {"relaunch.toml": Link("/dev/zero")}, ("ps",), "not a regular"),
    Case("job-is-fifo", {"job.yaml": Fifo(), **TRAIN}, ("run", "job.yaml"), "not a regular file"),
    Case("toml-fifo-ps", {"relaunch.toml": Fifo()}, ("ps",), "relaunch.toml"),
    Case("toml-fifo-run", {"relaunch.toml": Fifo(), **job()}, ("run", "job.yaml"), "not a regular"),
    Case("toml-fifo-doctor", {"relaunch.toml": Fifo()}, ("doctor",), "not a regular file"),
    Case("toml-fifo-status", {"relaunch.toml": Fifo()}, ("status", "some-run"), "not a regular"),
    Case("toml-fifo-agent", {"relaunch.toml": Fifo()}, ("agent", "--exit-when-idle", "0"),
         "not a regular file"),
    Case("job-too-large", job("# " + "x" * (2 << 20) + "\n"), ("run", "job.yaml"), "larger than"),
    Case("billion-laughs", {"job.yaml": laughs(), **TRAIN}, ("run", "job.yaml"),
         "expands to more than"),
    Case("self-alias", job("x: &a [*a]\n"), ("run", "job.yaml"), "refers to the value that holds"),
    Case("deep-flow", job("x: " + "[" * 50_000 + "\n"), ("run", "job.yaml"), "nests deeper than"),
    Case("deep-block", job("x:\n" + "".join(" " * i + "- \n" for i in range(200))),
         ("run", "job.yaml"), "nests deeper than"),
    # -- input that was silently changed (a key twice: PyYAML kept the last) ---------------
    Case("duplicate-key", job("command: [python, other.py]\n"), ("run", "job.yaml"),
         "duplicate key 'command' (lines 2 and 3)"),
    Case("duplicate-nested-key", job("retry:\n  max_recoveries: 1\n  max_recoveries: 2\n"),
         ("run", "job.yaml"), "duplicate key 'max_recoveries' (lines 4 and 5)"),
    Case("duplicate-flow-key", job("labels: {a: x, a: y}\n"), ("run", "job.yaml"),
         "duplicate key 'a' (line 3)"),
    Case("toml-duplicate-key", {"relaunch.toml": "[project]\nname = 'a'\nname = 'b'\n"},
         ("ps",), "malformed TOML: Cannot overwrite a value (at line 3"),
    Case("job-not-utf8", {"job.yaml": b"name: \xff\xfe\n"}, ("run", "job.yaml"), "not UTF-8"),
    # -- numbers that are not numbers (issue 9 item 5: stored as null, crashed agents) ----
    Case("startup-inf", job("startup_timeout: .inf\n"), ("run", "job.yaml"), "startup_timeout"),
    Case("stall-nan", job("stall_timeout: .nan\n"), ("run", "job.yaml"), "stall_timeout"),
    Case("grace-1e309", job("grace_period: 1.0e+309\n"), ("run", "job.yaml"), "grace_period"),
    Case("grace-1e309-text", job("grace_period: 1e309\n"), ("run", "job.yaml"), "grace_period"),
    Case("heartbeat-inf", job("heartbeat_interval: .inf\n"), ("run", "job.yaml"), "heartbeat"),
    Case("backoff-inf", job("retry: {backoff: .inf}\n"), ("run", "job.yaml"), "retry.backoff"),
    Case("sync-nan", job("checkpoints: {sync_interval: .nan}\n"), ("run", "job.yaml"),
         "checkpoints.sync_interval"),
    Case("max-wait-inf", job("resources: {max_wait: .inf}\n"), ("run", "job.yaml"), "max_wait"),
    Case("preempt-after-inf", job("local: {preempt: [{after: .inf}]}\n"), ("run", "job.yaml"),
         "local.preempt[0].after"),
    Case("vertex-timeout-inf", job("vertex: {run: {timeout: .inf}}\n"), ("run", "job.yaml"),
         "vertex.run.timeout"),
    Case("template-nan", {"job.yaml": TEMPLATED, **TRAIN}, ("run", "job.yaml", "--set", "lr=nan"),
         "template 'lr': 'nan' is not a finite number"),
    Case("template-inf", {"job.yaml": TEMPLATED, **TRAIN}, ("run", "job.yaml", "--set", "lr=inf"),
         "not a finite number"),
    Case("template-1e309", {"job.yaml": TEMPLATED, **TRAIN},
         ("run", "job.yaml", "--set", "lr=1e309"), "not a finite number"),
    Case("toml-lease-inf", {"relaunch.toml": "[agent]\nlease_ttl = inf\n"}, ("ps",),
         "agent.lease_ttl"),
    Case("toml-poll-nan", {"relaunch.toml": "[agent]\npoll = nan\n"}, ("ps",), "agent.poll"),
    # `ps` reads relaunch.toml without its models when it can vouch for it: not these
    Case("toml-typo-ps", {"relaunch.toml": "[agent]\nmax_job = 3\n"}, ("ps",),
         "did you mean 'max_jobs'?"),
    Case("toml-max-jobs-0-ps", {"relaunch.toml": "[agent]\nmax_jobs = 0\n"}, ("ps",),
         "agent.max_jobs"),
    Case("toml-endpoint-ps", {"relaunch.toml": "[gcp.endpoints]\nstorag = 'http://x'\n"},
         ("ps",), "unknown API 'storag'"),
    Case("toml-malformed-ps", {"relaunch.toml": "[store\n"}, ("ps",), "malformed TOML"),
    Case("agent-poll-nan", {}, ("agent", "--poll", "nan"), "--poll"),
    Case("agent-lease-inf", {}, ("agent", "--lease-ttl", "inf"), "--lease-ttl"),
    Case("agent-idle-nan", {}, ("agent", "--exit-when-idle", "nan"), "--exit-when-idle"),
    Case("ps-watch-nan", {}, ("ps", "--watch", "nan"), "--watch"),
    Case("ps-watch-inf", {}, ("ps", "--watch", "inf"), "--watch"),
    Case("stop-wait-nan", {}, ("stop", "some-run", "--wait", "nan"), "--wait"),
    Case("preempt-notice-inf", {}, ("preempt", "some-run", "--notice", "inf"), "--notice"),
    # -- input that was silently changed ---------------------------------------------------
    Case("env-wandb-run-id", job("env: {WANDB_RUN_ID: mine}\n"), ("run", "job.yaml"),
         "WANDB_RUN_ID is reserved"),
    Case("env-wandb-resume", job("env: {WANDB_RESUME: never}\n"), ("run", "job.yaml"),
         "WANDB_RESUME is reserved"),
    Case("vertex-env-wandb-run-id", job(base=VERTEX_ENV % "mine"), ("run", "job.yaml"),
         "WANDB_RUN_ID is reserved"),
    Case("env-relaunch-run-id", job("env: {RELAUNCH_RUN_ID: x}\n"), ("run", "job.yaml"),
         "RELAUNCH_RUN_ID is reserved"),
    Case("secret-wandb-resume", job("env_from_secret: {WANDB_RESUME: 'env:X'}\n"),
         ("run", "job.yaml"), "WANDB_RESUME is reserved"),
    Case("empty-run-id", job(), ("run", "job.yaml", "--run-id", ""), "invalid run id ''"),
    Case("local-with-image", job("image: no-such-image\n"), ("run", "job.yaml"),
         "the local backend runs the command on this machine"),
    Case("name-with-newline", job(base='name: "a\\nb"\ncommand: [python, train.py]\n'),
         ("run", "job.yaml"), "name: a name is one line"),
    Case("toml-name-with-newline", {"relaunch.toml": '[project]\nname = "a\\nb"\n'}, ("ps",),
         "project.name: a name is one line"),
    Case("toml-name-newline-run", {"relaunch.toml": '[project]\nname = "a\\nb"\n', **job()},
         ("run", "job.yaml"), "project.name: a name is one line"),
    Case("long-run-id", {}, ("status", "X" * 300), "… (300 characters) — "),
    Case("empty-queue", job(), ("run", "job.yaml", "--queue", ""), "invalid queue name ''"),
    Case("blank-name", job(base="name: '  '\ncommand: [python, train.py]\n"),
         ("run", "job.yaml"), "name cannot be blank"),
    # -- jobs `doctor` calls broken, or a command that cannot start: refused, not queued ---
    Case("stall-under-heartbeats", job("heartbeat_interval: 10m\nstall_timeout: 1s\n"),
         ("run", "job.yaml"), "stall_timeout 1s is under 3 heartbeats"),
    Case("startup-before-heartbeat", job("startup_timeout: 1s\n"), ("run", "job.yaml"),
         "startup_timeout 1s ends before"),
    Case("no-such-program", job(base="name: d\ncommand: [nonexistent-binary-xyz]\n"),
         ("run", "job.yaml"), "program 'nonexistent-binary-xyz' is not on the PATH"),
    Case("no-such-script", job(base="name: d\ncommand: [python, trian.py]\n"),
         ("run", "job.yaml"), "script 'trian.py' is not in"),
    Case("no-such-relative-program", job(base="name: d\ncommand: [./run.sh]\n"),
         ("run", "job.yaml"), "program './run.sh' is not an executable file"),
    Case("program-not-on-job-path", job(base="name: d\ncommand: [python, train.py]\n"
                                            "env: {PATH: /nowhere}\n"),
         ("run", "job.yaml"), "program 'python' is not on the PATH the job gets"),
    Case("nul-in-argument", job(base='name: d\ncommand: [python, train.py, "a\\0b"]\n'),
         ("run", "job.yaml"), "command: a NUL byte"),
    Case("nul-in-env", job('env: {X: "a\\0b"}\n'), ("run", "job.yaml"), "env: a NUL byte"),
    # -- messages that misled ---------------------------------------------------------------
    Case("template-default-type", job(
        base="name: d\ntemplates: {steps: {type: integer, default: many}}\ncommand: [x]\n"),
        ("run", "job.yaml"), "templates.steps"),
    Case("bad-since", {}, ("events", "some-run", "--since", "nan"), "--since"),
]
# fmt: on


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(project: Project, case: Case) -> None:
    project.write(case.files)
    before = project.files()
    result = project.relaunch(*case.argv, env=case.env)
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert result.code == 2, (result.code, result.out, result.err)
    assert "Traceback" not in result.err + result.out
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ") and " — " in lines[0], lines[0]  # what, then what to do
    assert case.fragment in lines[0], lines[0]
    assert len(lines[0]) < 400, "an error line echoes a whole input"
    assert project.files() == before, "a refused command wrote files"


def test_repeating_the_value_relaunch_sets_is_not_a_mistake() -> None:
    """W&B Launch queue configs set WANDB_RUN_ID=${run_id}: that is what relaunch sets, so
    nothing is silently changed and the config is accepted as is."""
    from relaunch.spec.loader import parse_job

    spec = parse_job(VERTEX_ENV % "${run_id}", "job.yaml")
    assert spec.vertex.spec is not None
    parse_job(JOB + "env: {WANDB_RUN_ID: '${run_id}', WANDB_RESUME: allow}\n", "job.yaml")
