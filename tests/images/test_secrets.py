"""Build secrets: `--secret id=ID,env=VAR` for docker, availableSecrets for Cloud Build;
a value is never in a tag, an argv, a log, a record or a request body."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from relaunch.errors import BackendError, SpecError
from relaunch.images.build import build_images, plan_images
from relaunch.images.builders.base import Builder
from relaunch.images.builders.cloudbuild import CloudBuildBuilder
from relaunch.spec.project import ProjectConfig
from tests.fakegcp.fake import FakeGCP

from .conftest import config_at, write

VALUE = "hf_s3cr3t-value-42"
SECRET = "projects/fake-project/secrets/hf-token"


def project(root: Path, secrets: str) -> Path:
    write(root, "Dockerfile", "FROM debian\nRUN --mount=type=secret,id=tok cat /run/secrets/tok\n")
    write(
        root,
        "relaunch.toml",
        '[image_stack]\nrepository = "us-docker.pkg.dev/fake-project/r"\n'
        '[gcp]\nproject = "fake-project"\nstaging_bucket = "gs://stage"\n'
        f'[images.app]\ndockerfile = "Dockerfile"\nsecrets = {{ {secrets} }}\n',
    )
    return root


def every_byte_written(root: Path, *extra: Path) -> str:
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix != ".gz"] + list(extra)
    return "\n".join(p.read_text(errors="replace") for p in files)


def test_docker_gets_the_variable_name_never_the_value(
    tmp_path: Path, fake_docker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path / "p", 'tok = "env:HF_TOKEN"')
    monkeypatch.setenv("HF_TOKEN", VALUE)
    config = config_at(root)
    tag = plan_images(config, offline=True).item("app").tag
    (built,) = build_images(config, builder="docker", offline=True)
    call = json.loads(fake_docker.read_text())
    argv = call["argv"]
    assert argv[argv.index("--secret") + 1] == "id=tok,env=HF_TOKEN"
    assert call["secret_sha256"] == {"HF_TOKEN": hashlib.sha256(VALUE.encode()).hexdigest()}
    assert VALUE not in every_byte_written(root, fake_docker)  # argv, log, record
    monkeypatch.setenv("HF_TOKEN", "another value")
    assert plan_images(config, offline=True).item("app").tag == tag == built.item.tag


def test_docker_reads_a_secret_manager_secret_into_its_environment_only(
    tmp_path: Path, fake_docker: Path, fake_gcp: FakeGCP
) -> None:
    fake_gcp.secrets.add("hf-token", VALUE.encode())
    root = project(tmp_path / "p", f'tok = "{SECRET}"')
    build_images(config_at(root), builder="docker", offline=True)
    call = json.loads(fake_docker.read_text())
    argv = call["argv"]
    assert argv[argv.index("--secret") + 1] == "id=tok,env=RELAUNCH_BUILD_SECRET_TOK"
    expected = hashlib.sha256(VALUE.encode()).hexdigest()
    assert call["secret_sha256"] == {"RELAUNCH_BUILD_SECRET_TOK": expected}
    assert VALUE not in every_byte_written(root, fake_docker)


def test_an_unset_variable_is_an_error_before_docker_runs(
    tmp_path: Path, fake_docker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    root = project(tmp_path / "p", 'tok = "env:HF_TOKEN"')
    with pytest.raises(BackendError, match=r"\$HF_TOKEN, which is not set"):
        build_images(config_at(root), builder="docker", offline=True)
    assert not fake_docker.exists()


def cloudbuild(config: ProjectConfig, kind: str) -> Builder:
    return CloudBuildBuilder(config, poll_interval=0.01, retry_deadline=0)


def test_cloud_build_reads_the_secret_itself(tmp_path: Path, fake_gcp: FakeGCP) -> None:
    fake_gcp.gcs.create_bucket("stage")
    fake_gcp.secrets.add("hf-token", VALUE.encode())
    root = project(tmp_path / "p", f'tok = "{SECRET}"')
    build_images(config_at(root), builder="cloudbuild", offline=True, make=cloudbuild)
    (build,) = fake_gcp.cloudbuild.builds.values()  # the schema accepted it
    assert build["availableSecrets"] == {
        "secretManager": [{"versionName": f"{SECRET}/versions/latest", "env": "tok"}]
    }
    step = build["steps"][0]
    assert step["secretEnv"] == ["tok"]
    assert step["args"][step["args"].index("--secret") + 1] == "id=tok,env=tok"
    sent = json.dumps([str(r) for r in fake_gcp.router.requests])
    assert VALUE not in sent and VALUE not in every_byte_written(root)


def test_cloud_build_refuses_an_environment_secret(
    tmp_path: Path, fake_gcp: FakeGCP, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_gcp.gcs.create_bucket("stage")
    monkeypatch.setenv("HF_TOKEN", VALUE)
    root = project(tmp_path / "p", 'tok = "env:HF_TOKEN"')
    with pytest.raises(SpecError, match="Cloud Build cannot see"):
        build_images(config_at(root), builder="cloudbuild", offline=True, make=cloudbuild)
    assert fake_gcp.cloudbuild.builds == {}
    assert not fake_gcp.gcs.objects("stage"), "nothing staged"


def test_a_bad_secret_reference_is_a_spec_error(tmp_path: Path) -> None:
    root = project(tmp_path / "p", 'tok = "HF_TOKEN"')
    with pytest.raises(SpecError, match="neither env:VAR nor projects/P/secrets/S"):
        config_at(root)
