"""The wrapper as it runs in a Vertex AI custom job, for benchmarks/runtime_cost.py.

The container's environment is the one the Vertex backend builds (``BodyBuilder``: the
contract variables, ``RELAUNCH_RUNTIME``, ``RELAUNCH_CREDENTIALS``), plus what the
fake's job executor adds (tests/fakegcp/vertex.py): the fake's endpoints and the
metadata server of the job's VM (``GCE_METADATA_HOST``; ``GCE_METADATA_IP`` too, so
google-auth's start-up ping finds it where Google's would answer). No gcloud
configuration, as in an image.

The fake Cloud Storage on 127.0.0.1 would pass for an emulator that needs no
credentials; :data:`LAUNCH` starts the runtime with that check off, so the store signs
its requests exactly as on Google's machines. Two ways to get the token, measured side
by side: the backend's word (the metadata server, read by the store itself) and the
google-auth path the runtime took before the backend said anything
(``google.auth.default()``, without ``RELAUNCH_CREDENTIALS``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

LAUNCH = (
    "import sys, relaunch.gcp.endpoints as e; e.is_local_emulator = lambda url: False; "
    "from relaunch.runtime.wrapper import main; sys.exit(main(sys.argv[1:]))"
)
ACCOUNT = "trainer@bench.iam.gserviceaccount.com"
KINDS = ("vertex", "vertex_google_auth")


def container_env(store: Any, run_id: str) -> dict[str, str]:
    """The ``containerSpec.env`` of attempt 1 of ``run_id``, built by the backend."""
    from relaunch.backends.base import SubmitContext
    from relaunch.backends.vertex.body import BodyBuilder
    from relaunch.runs.records import RunRecord
    from relaunch.spec.loader import parse_job

    spec = parse_job(
        "name: bench\nbackend: vertex\nimage: trainer\ncommand: [python, train.py]\n"
        "resources: {machine_type: n1-standard-4}\n"
        f"vertex: {{run: {{service_account: {ACCOUNT}}}}}\n",
        "job.yaml",
    )
    gcp = {"project": "bench", "region": "us-central1"}
    run = RunRecord(
        run_id=run_id, name="bench", queue="default", backend="vertex", spec=spec, gcp=gcp
    )
    ctx = SubmitContext(store=store, command=spec.argv, image_uri="trainer")
    body = BodyBuilder(run, 1, "us-central1", ctx).build()
    env = body["job_spec"]["worker_pool_specs"][0]["container_spec"]["env"]
    return {e["name"]: e["value"] for e in env}


def job_env(
    kind: str,
    store: Any,
    run_id: str,
    fake: Any,
    metadata_host: str,
    scratch: Path,
    tls: tuple[str, Path] | None = None,
) -> dict[str, str]:
    """What the wrapper of ``run_id`` sees in a Vertex job (``kind``: one of KINDS).
    ``tls``: ``(https URL, hashed CA folder)`` of the fake's storage endpoint over TLS
    (tests/fakegcp/tls.py), which the store then reaches as it reaches Google's."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env = {**base, **fake.env(), **container_env(store, run_id)}
    env.update(
        GCE_METADATA_HOST=metadata_host,
        GCE_METADATA_IP=metadata_host,
        CLOUDSDK_CONFIG=str(scratch / "no-gcloud"),
        RELAUNCH_SCRATCH=str(scratch / run_id),
    )
    if tls is not None:
        url, cadir = tls
        env.update(RELAUNCH_STORAGE_ENDPOINT=url, STORAGE_EMULATOR_HOST=url)
        # the system's CAs and the fake's certificate, where OpenSSL looks CAs up by
        # hash: /etc/ssl/certs of the image, for every client, in a real job
        env["SSL_CERT_DIR"] = str(cadir)
    if kind == "vertex_google_auth":
        del env["RELAUNCH_CREDENTIALS"]
    return env


def metadata_server(fake: Any) -> Any:
    """The job VM's metadata server (started), handing out the job's account's tokens."""
    from tests.fakegcp.metadata import MetadataServer

    vm = {"name": "workerpool0-0", "id": 1, "zone": "zones/us-central1-a"}
    server = MetadataServer({**vm, "serviceAccounts": [{"email": ACCOUNT}]}, fake.project)
    server.start()
    return server
