"""relaunch.toml read without its models (`relaunch ps`): the quick check vouches only
for documents the models accept, finds the same store, and leaves every other document
to the models' one-line errors."""

from __future__ import annotations

import copy
import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from relaunch.errors import SpecError
from relaunch.spec.images import ImageSpec
from relaunch.spec.loader import load_project, store_url
from relaunch.spec.project import ProjectConfig
from relaunch.spec.projectfile import read_project, store_location
from relaunch.spec.vouch import IMAGE, SECTIONS, certainly_valid

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

FULL = {
    "project": {"name": "arr-coc", "entity": "team"},
    "store": {"url": "gs://bucket/runs"},
    "agent": {"queues": ["a", "b"], "max_jobs": 8, "poll": "5s", "lease_ttl": 30},
    "gcp": {
        "project": "p",
        "region": "us-central1",
        "staging_bucket": "gs://s",
        "service_account": "sa@p.iam.gserviceaccount.com",
        "endpoints": {"storage": "http://127.0.0.1:9"},
    },
    "image_stack": {"discover": "Stack", "repository": "r", "tag_length": 12, "builder": "docker"},
    "images": {
        "base": {"dockerfile": "Stack/base/Dockerfile"},
        "trainer": {
            "dockerfile": "Stack/trainer/Dockerfile",
            "context": ".",
            "parent": "base",
            "parent_arg": "BASE_IMAGE",
            "inputs": ["Stack/trainer/**", "src/**/*.py"],
            "args": {"TORCH": "2.4"},
            "repository": "us-central1-docker.pkg.dev/p/r",
            "dockerignore": "Stack/trainer/.dockerignore",
            "platform": "linux/amd64",
            "timeout": "2h",
            "machine_type": "E2_HIGHCPU_32",
            "include_git": True,
            "secrets": {"hf_token": "env:HF_TOKEN", "key": "projects/p/secrets/s/versions/2"},
        },
    },
}

# Values to put in every field: each is right for some field and wrong for others.
VALUES: list[Any] = [
    "", "x", "5s", "1.5h", "soon", "-1", "gs://b/p", "s3://b/p", "gs://", ".relaunch",
    "auto", "cloudbuild", "podman", 0, 1, 2, 6, 7, 64, 65, -3, 1.5, 2.0, 0.5,
    float("inf"), float("nan"), 1e309, True, False, [], ["q"], ["q", 3], {},
    {"storage": "http://x"}, {"storag": "http://x"}, {"storage": 3},
    "BASE", "1ARG", "A-B", "Base", "base", "a__b", "a___b", "x" * 129, "24h", "25h", 86400,
    86401, ["  "], ["*.py", ""], [3], {"A": "b"}, {"1A": "b"}, {"A": 1}, {"hf": "env:HF"},
    {"hf": "env:"}, {"hf": "projects/p/secrets/s"}, {"h-f": "env:X"}, {"hf": "nope"},
    "a\nb", " ", "tab\there",
]  # fmt: skip


def documents() -> list[dict[str, Any]]:
    """FULL, and FULL with each field (and each section) given each of VALUES, plus an
    unknown field in each section."""
    out = [FULL, {}, {"images": {}}, {"images": {"base": {"context": "."}}}]
    for section, fields in FULL.items():
        for field, value in itertools.product([*fields, "unknown"], VALUES):
            doc = copy.deepcopy(FULL)
            doc[section][field] = value  # in [images]: an image named `field`
            out.append(doc)
        for value in VALUES:
            out.append({**copy.deepcopy(FULL), section: value})
    for field, value in itertools.product([*FULL["images"]["trainer"], "unknown"], VALUES):
        doc = copy.deepcopy(FULL)
        doc["images"]["trainer"][field] = value
        out.append(doc)
    for name in (v for v in VALUES if isinstance(v, str)):
        out.append({"images": {name: {"dockerfile": "D"}}})
    return out


def accepted(doc: dict[str, Any]) -> ProjectConfig | None:
    try:
        return ProjectConfig.model_validate(doc)
    except ValidationError:
        return None


def test_what_the_quick_check_vouches_for_the_models_accept_with_the_same_store() -> None:
    vouched = refused = 0
    for doc in documents():
        config = accepted(doc)
        if certainly_valid(doc):
            vouched += 1
            assert config is not None, doc
            assert config.store.url == doc.get("store", {}).get("url", ".relaunch")
        refused += config is None
    # Both sides are well represented, so the check above could fail either way.
    assert vouched > 100 and refused > 500, (vouched, refused)


def test_it_vouches_only_for_fields_the_models_have() -> None:
    for section, fields in SECTIONS.items():
        annotation = ProjectConfig.model_fields[section].annotation
        assert isinstance(annotation, type) and issubclass(annotation, BaseModel)
        assert set(fields) <= set(annotation.model_fields), section
    assert set(IMAGE) <= set(ImageSpec.model_fields)


def test_the_examples_are_vouched_for() -> None:
    """The quick path is the one real projects take (else `ps` would quietly be slow)."""
    for name in ("vertex", "gce", "seeds-stack"):
        assert certainly_valid(read_project(EXAMPLES / name / "relaunch.toml")), name


@pytest.mark.parametrize(
    "text",
    [
        '[store]\nurl = "runs"\n',
        '[store]\nurl = "gs://b/p"\n[agent]\nmax_jobs = 2\n',
        "[project]\nname = 'x'\n",
        '[images.base]\ndockerfile = "Dockerfile"\n[store]\nurl = "s"\n',
        '[agent]\nmax_jobs = "4"\n[store]\nurl = "s"\n',  # valid, left to the models
        "",
    ],
)
def test_the_store_is_the_one_the_workspace_opens(
    text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "relaunch.toml").write_text(text)
    monkeypatch.chdir(tmp_path / "sub")
    monkeypatch.delenv("RELAUNCH_STORE", raising=False)
    monkeypatch.delenv("RELAUNCH_PROJECT", raising=False)
    assert store_location() == store_url(load_project())
    assert (
        store_location(None, "other")
        == store_url(load_project(), "other")
        == str(tmp_path / "other")  # relative to relaunch.toml, as before
    )
    monkeypatch.setenv("RELAUNCH_STORE", "gs://env/x")
    assert store_location() == store_url(load_project()) == "gs://env/x"


@pytest.mark.parametrize(
    "text",
    [
        "[agent]\nmax_job = 3\n",
        "[agent]\nmax_jobs = 0\n",
        "[agent]\nlease_ttl = inf\n",
        "[gcp.endpoints]\nstorag = 'http://x'\n",
        "[store]\nurl = 's3://b/x'\n",
        "[store\n",
        "[images.Bad]\ndockerfile = 'D'\n",
        "[images.base]\ncontext = '.'\n",
        "[images.base]\ndockerfile = 'D'\nsecrets = {hf = 'HF_TOKEN'}\n",
        "[images.base]\ndockerfile = 'D'\ntimeout = '25h'\n",
    ],
)
def test_a_bad_config_gets_the_models_error(text: str, tmp_path: Path) -> None:
    path = tmp_path / "relaunch.toml"
    path.write_text(text)
    with pytest.raises(SpecError) as full:
        load_project(path)
    with pytest.raises(SpecError) as quick:
        store_location(path)
    assert str(quick.value) == str(full.value)


def test_ps_imports_no_pydantic_for_a_project_it_can_vouch_for(tmp_path: Path) -> None:
    """Its models' imports were most of `relaunch ps`'s start-up."""
    (tmp_path / "relaunch.toml").write_text((EXAMPLES / "gce" / "relaunch.toml").read_text())
    (tmp_path / "store").mkdir()  # a --store that does not exist is refused
    script = (
        "import sys\nfrom relaunch.cli.main import main\n"
        f"main(['ps', '--store', {str(tmp_path / 'store')!r}])\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pydantic', 'rich'}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.splitlines() == [
        f"no runs in the last day (--all for older) in {tmp_path / 'store'}",
        "[]",
    ]
