"""The vertex: and gce: sections of a job are built only for a job that has them, and
behave as plain model fields otherwise: same errors, same values, same schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from relaunch.errors import SpecError
from relaunch.runs.records import RunRecord
from relaunch.spec.gce import GceOptions
from relaunch.spec.job import JobSpec
from relaunch.spec.loader import parse_job
from relaunch.spec.vertex import VertexOptions

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
VERTEX = (
    "name: t\nbackend: vertex\ncommand: [t]\nimage: x\nvertex:\n  run: {timeout: 2h}\n"
    "  spec: {worker_pool_specs: [{machine_spec: {machine_type: n1-standard-4}}]}\n"
)


def test_a_local_job_neither_imports_nor_builds_the_cloud_sections() -> None:
    script = f"""
import sys
from relaunch.runs.records import RunRecord
from relaunch.spec.loader import load_job
spec = load_job({str(EXAMPLES / "quickstart" / "job.yaml")!r}).spec
record = RunRecord(run_id="r-1", name="q", queue="default", backend="local", spec=spec)
RunRecord.model_validate_json(record.model_dump_json(exclude_none=True))
print(sorted(m for m in sys.modules if m in ("relaunch.spec.vertex", "relaunch.spec.gce")))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


def test_a_section_not_given_reads_as_its_default_and_is_not_stored() -> None:
    spec = parse_job("name: t\ncommand: [t]\n", "job.yaml")
    dumped = json.loads(spec.model_dump_json())
    assert "vertex" not in dumped and "gce" not in dumped
    assert spec.vertex == VertexOptions() and spec.gce == GceOptions()
    assert spec.vertex is spec.vertex  # built once, then kept (a change to it sticks)
    spec.gce.tags.append("x")
    assert spec.gce.tags == ["x"]
    assert JobSpec.model_validate_json(spec.model_dump_json()).gce.tags == ["x"]


def test_a_given_section_validates_dumps_and_reads_back_as_its_model() -> None:
    spec = parse_job(VERTEX, "job.yaml")
    assert isinstance(spec.vertex, VertexOptions) and spec.vertex.run.timeout == 7200.0
    record = RunRecord(run_id="r-1", name="t", queue="q", backend="vertex", spec=spec)
    text = record.model_dump_json(exclude_none=True)
    assert json.loads(text)["spec"]["vertex"] == spec.vertex.model_dump(exclude_none=True)
    again = RunRecord.model_validate_json(text)
    assert again.spec.vertex == spec.vertex
    assert again.spec.model_dump() == spec.model_dump()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vertex: {run: {timout: 5}}", "unknown field 'vertex.run.timout' — did you mean"),
        ("gce: {imagee: x}", "unknown field 'gce.imagee'"),
        ("vertex: null", "vertex: Input should be a valid dictionary or instance of VertexOptions"),
        ("gce: {max_run_duration: 1s}", "gce.max_run_duration: max_run_duration is between"),
        ("vertex: {run: {timeout: .inf}}", "vertex.run.timeout: inf is not a finite duration"),
        (
            "vertex: {run: {timeout: .inf}}\npriority: 99",
            "priority: Input should be less than or equal to 9 (got 99) (and 1 more)",
        ),
    ],
)
def test_errors_inside_a_section_name_the_field(text: str, message: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_job(f"name: t\ncommand: [t]\n{text}\n", "job.yaml")
    assert f"job.yaml: {message}" in str(e.value)


def test_the_job_schema_describes_the_sections_as_models() -> None:
    schema = JobSpec.model_json_schema()
    assert schema["properties"]["vertex"] == {"$ref": "#/$defs/VertexOptions"}
    assert schema["properties"]["gce"] == {"$ref": "#/$defs/GceOptions"}
    assert "worker_pool_specs" in schema["$defs"]["QueueSpec"]["properties"]
