"""Reading a failed push or build: the lines Artifact Registry and remote registries
answer with, which the local registry of the engine tests cannot produce."""

from __future__ import annotations

from relaunch.images.builders.outcome import BuildFailed, build_failure, push_failure

AR = "us-central1-docker.pkg.dev/proj/arr-coc-registry/arr-trainer:abc123"
LAYERS = ["The push refers to repository [x]", "5bb60b834017: Preparing", "a4030c1f18eb: Waiting"]


def test_artifact_registry_without_login_says_configure_docker() -> None:
    e = push_failure([*LAYERS, "unauthorized: authentication failed"], 1, AR, "log")
    assert e.reason == "permission" and "wants credentials" in e.message
    configure = "run `gcloud auth configure-docker us-central1-docker.pkg.dev`"
    assert e.hint == f"{configure}, then build again"


def test_artifact_registry_refusal_names_the_writer_role() -> None:
    line = (
        'denied: Permission "artifactregistry.repositories.uploadArtifacts" denied on resource '
        '"projects/proj/locations/us-central1/repositories/arr-coc-registry" (or it may not exist)'
    )
    e = push_failure([*LAYERS, line], 1, AR, "log")
    assert e.message.startswith("the registry us-central1-docker.pkg.dev refused the push")
    assert "roles/artifactregistry.writer" in (e.hint or "")
    assert "credentials" not in e.message


def test_layer_ids_that_look_like_status_codes_are_not_read_as_such() -> None:
    e = push_failure([*LAYERS, "EOF"], 1, "10.0.0.5:5000/app:1", "the.log")
    assert e.message == "docker push of 10.0.0.5:5000/app:1 failed (exit 1): EOF"


def test_a_plain_http_registry_off_loopback_says_insecure_registries() -> None:
    line = 'Get "https://10.0.0.5:5000/v2/": http: server gave HTTP response to HTTPS client'
    e = push_failure([line], 1, "10.0.0.5:5000/app:1", "log")
    assert e.reason == "transient" and "cannot reach the registry 10.0.0.5:5000" in e.message
    assert "insecure-registries" in (e.hint or "")


def test_a_build_failure_keeps_the_failing_steps_lines_only() -> None:
    lines = [
        "#4 [2/3] RUN make deps",
        "#4 sha256:aaaa",
        "#4 0.2 deps ok",
        "#4 DONE 0.3s",
        "#5 [3/3] RUN make model",
        "#5 sha256:bbbb",
        "#5 0.1 compiling",
        "#5 0.4 model.c:3: error: expected ';'",
        "#5 ERROR: executor failed running [/bin/sh -c make model]: exit code: 2",
        "------",
        " > [3/3] RUN make model:",
        "------",
        "executor failed running [/bin/sh -c make model]: exit code: 2",
    ]
    e = build_failure(lines, 1, "app:abc", "the.log")
    assert isinstance(e, BuildFailed) and e.reason == "user-error"
    assert e.message == (
        "build of app:abc failed (exit 1): executor failed running [/bin/sh -c make model]: "
        "exit code: 2"
    )
    assert e.tail == [
        "#5 [3/3] RUN make model",
        "#5 0.1 compiling",
        "#5 0.4 model.c:3: error: expected ';'",
        "#5 ERROR: executor failed running [/bin/sh -c make model]: exit code: 2",
    ]
