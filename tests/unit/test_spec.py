"""Bad input: one clear line naming the field and the fix, exit 2, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from relaunch.errors import SpecError
from relaunch.spec.common import parse_duration
from relaunch.spec.loader import parse_job
from relaunch.states import Action, Reason

GOOD = "name: t\ncommand: [python, train.py]\n"


def test_minimal_job_and_defaults() -> None:
    spec = parse_job(GOOD, "job.yaml")
    assert spec.command == ["python", "train.py"]
    assert spec.backend == "local" and spec.queue == "default"
    assert spec.retry.action_for(Reason.PREEMPTED) is Action.RETRY
    assert spec.retry.action_for(Reason.USER_ERROR) is Action.FAIL


def test_command_string_is_split_and_numbers_become_text() -> None:
    spec = parse_job(
        "name: t\ncommand: python train.py --lr 0.1\nargs: [--bs, 32]\nenv: {BATCH: 32}", "j"
    )
    assert spec.command == ["python", "train.py", "--lr", "0.1"]
    assert spec.argv == ["python", "train.py", "--lr", "0.1", "--bs", "32"]
    assert spec.env == {"BATCH": "32"}


def test_a_merge_key_may_override_what_it_merges_and_a_key_twice_may_not() -> None:
    base = "name: t\ncommand: [x]\nlabels: &b {a: '1', b: '2'}\n"
    spec = parse_job(base + "env: {<<: *b, a: '3'}\n", "job.yaml")
    assert spec.env == {"a": "3", "b": "2"}
    with pytest.raises(SpecError, match=r"duplicate key 'A' \(lines 5 and 6\)"):
        parse_job(base + "env:\n  A: '3'\n  A: '4'\n", "job.yaml")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(90, 90), ("90s", 90), ("15m", 900), ("1.5h", 5400), ("500ms", 0.5), ("2d", 172800)],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


def test_templates_typed_and_validated() -> None:
    text = (
        "name: t\ntemplates:\n  gpus: {type: integer, minimum: 0, maximum: 8, default: 1}\n"
        "  machine: {type: string, enum: [n1-standard-4, a2-highgpu-8g]}\n"
        "command: [train, '--gpus={{gpus}}', '{{machine}}']\n"
        "resources: {accelerator_count: {{gpus}}}\n"
    )
    spec = parse_job(text, "j", {"machine": "a2-highgpu-8g", "gpus": "4"})
    assert spec.command == ["train", "--gpus=4", "a2-highgpu-8g"]
    assert spec.resources.accelerator_count == 4


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        (
            "name: t\ncomand: [x]\ncommand: [y]",
            {},
            "unknown field 'comand' — did you mean 'command'",
        ),
        (
            "name: t\ncommand: [x]\nresources: {acelerator_count: 1}",
            {},
            "unknown field 'resources.acelerator_count' — did you mean 'accelerator_count'",
        ),
        ("name: t\ncommand: ['${nope_macro}']", {}, "unknown macro '${nope_macro}'"),
        (
            "name: t\ncommand: [x]\ntemplates: {n: {type: integer, maximum: 3}}\nenv: {N: '{{n}}'}",
            {"n": "5"},
            "template 'n': 5 is above the maximum 3",
        ),
        (
            "name: t\ncommand: [x]\ntemplates: {m: {enum: [a, b]}}\nenv: {M: '{{m}}'}",
            {"m": "c"},
            "template 'm': 'c' is not one of ['a', 'b']",
        ),
        ("name: t\ncommand: ['{{undeclared}}']", {}, "{{undeclared}} is used but not declared"),
        ("name: t\ncommand: [x]", {"x": "1"}, "--set x: no such template variable"),
        ("name: t\ncommand: [x]\nrun_id: Bad_Id", {}, "run_id: a run id is 1-63"),
        ("name: t\n  command: : x", {}, "malformed YAML"),
        ("- just\n- a list", {}, "a job file is a YAML mapping"),
        ("name: t\ncommand: [x]\nstall_timeout: soon", {}, "'soon' is not a duration"),
        (
            "name: t\ncommand: [x]\nretry: {actions: {preempted: maybe}}",
            {},
            "retry.actions.preempted",
        ),
        ("name: t\ncommand: [x]\nenv_from_secret: {KEY: hunter2}", {}, "is not a secret reference"),
    ],
)
def test_bad_input_is_one_line_naming_the_problem(
    text: str, values: dict[str, str], expected: str
) -> None:
    with pytest.raises(SpecError) as err:
        parse_job(text, "job.yaml", values)
    message = str(err.value)
    assert expected in message
    assert "\n" not in message and message.startswith("job.yaml")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relaunch.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("job", "args", "needle"),
    [
        ("name: t\ncomand: [x]\ncommand: [y]\n", [], "did you mean 'command'"),
        (
            "name: t\ncomand: [python, train.py]\n",
            [],
            "unknown field 'comand' — did you mean 'command'",
        ),
        ("nmae: t\ncommand: [x]\n", [], "did you mean 'name'"),
        (
            "name: t\ncommand: [x]\ntemplates: {n: {type: integer, maximum: 3}}\n"
            "env: {N: '{{n}}'}\n",
            ["--set", "n=9"],
            "above the maximum 3",
        ),
        ("name: t\ncommand: [x]\n", ["--run-id", "NOT valid"], "invalid run id"),
        ("name: t\n  command: : x\n", [], "malformed YAML"),
        ("name: t\ncommand: [x]\nbackend: gce\n", [], "backend gce needs resources.machine_type"),
        ("name: t\ncommand: [x]\nworkdir: nowhere\n", [], "workdir"),
        (
            "name: t\ncommand: [x]\nbackend: vertex\nimage: us-docker.pkg.dev/p/r/t:1\n"
            "resources: {machine_type: n1-standard-4, regions: [us-central1]}\n"
            "vertex: {project: p}\n",
            [],
            "which a job in the cloud cannot reach",
        ),
    ],
)
def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, job: str, args: list[str], needle: str
) -> None:
    (tmp_path / "job.yaml").write_text(job)
    result = _cli("run", "job.yaml", "--store", str(tmp_path / "store"), *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    store = tmp_path / "store"
    written = [p for p in store.rglob("*") if p.is_file() and ".store" not in p.parts]
    assert written == []


def test_cli_missing_file_and_unknown_run(tmp_path: Path) -> None:
    missing = _cli("run", "nope.yaml", "--store", str(tmp_path / "s"), cwd=tmp_path)
    assert missing.returncode == 2 and "job file not found" in missing.stderr
    unknown = _cli("status", "no-such-run", "--store", str(tmp_path / "s"), cwd=tmp_path)
    assert unknown.returncode == 2 and "no run 'no-such-run'" in unknown.stderr
    bad_flag = _cli("ps", "--bogus", cwd=tmp_path)
    assert bad_flag.returncode == 2 and "Traceback" not in bad_flag.stderr


def test_malformed_relaunch_toml(tmp_path: Path) -> None:
    (tmp_path / "relaunch.toml").write_text("[agent]\nmax_jobz = 3\n")
    result = _cli("ps", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown field 'agent.max_jobz' — did you mean 'max_jobs'" in result.stderr


def test_schema_lists_fields() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "relaunch.cli.main", "schema", "job"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert '"stall_timeout"' in result.stdout and '"additionalProperties": false' in result.stdout


def test_without_relaunch_toml_every_command_uses_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relaunch.spec.loader import load_project, store_url

    (tmp_path / "examples").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RELAUNCH_STORE", raising=False)
    from_job = load_project(start=tmp_path / "examples")
    assert store_url(from_job) == store_url(load_project()) == str(tmp_path / ".relaunch")
    (tmp_path / "examples" / "relaunch.toml").write_text('[store]\nurl = "s"\n')
    assert store_url(load_project(start=tmp_path / "examples")) == str(tmp_path / "examples/s")
