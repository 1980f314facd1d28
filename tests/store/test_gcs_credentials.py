"""Which credentials sign the store's requests: the one the job's backend names, a
user's own credential file before it, Application Default Credentials elsewhere.

Each case runs the store in a fresh interpreter with the environment a job would have,
against the fake Cloud Storage standing in for Google (so the store signs its requests),
and reads the ``Authorization`` header that reached the fake: what Google would see.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from relaunch.errors import CredentialsError, StoreError
from relaunch.store.gcs import GCSStore
from tests.fakegcp.fake import FakeGCP
from tests.fakegcp.metadata import MetadataServer
from tests.fakegcp.server import Request, Response

# google-auth, its GCE module and what that pulls in: 13 MB in every runtime; urllib3,
# which google-auth's transport wants: 5 MB
HEAVY = ("google.auth", "google.auth.compute_engine", "requests", "cryptography", "urllib3")
CODE = (
    "import json, sys, relaunch.gcp.endpoints as e;"
    "e.is_local_emulator = lambda url: False;"  # the fake stands in for Google here
    "from relaunch.store.gcs import GCSStore;"
    "s = GCSStore('gs://b/job'); g = s.put('k', b'v'); assert s.get('k') == (b'v', g);"
    f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
)
ACCOUNT = "trainer@fake-project.iam.gserviceaccount.com"
USER_ACCOUNT = "users-key@fake-project.iam.gserviceaccount.com"


@pytest.fixture
def machine(fake_gcp: FakeGCP) -> Iterator[MetadataServer]:
    """The metadata server of the machine a job runs on, for the job's service account."""
    fake_gcp.gcs.create_bucket("b")
    server = MetadataServer(
        {"name": "vm", "id": 1, "zone": "zones/z", "serviceAccounts": [{"email": ACCOUNT}]},
        fake_gcp.project,
        token="machine-token-7f3a",
    )
    server.start()
    yield server
    server.stop()


def signed_with(fake: FakeGCP, tmp_path: Path, **env: str) -> tuple[set[str], list[str]]:
    """The ``Authorization`` headers the store's requests carried, and which of HEAVY
    the store imported, in a job whose environment adds ``env`` to this one's."""
    seen: set[str] = set()

    def after(api: str, req: Request, res: Response) -> None:
        if api == "storage":
            seen.add(req.headers.get("authorization", ""))

    fake.router.after = after
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GCE_METADATA", "GOOGLE_A"))}
    clean.pop("RELAUNCH_CREDENTIALS", None)
    clean.pop("RELAUNCH_ON_GCE", None)
    clean["CLOUDSDK_CONFIG"] = str(tmp_path / "no-gcloud")  # no ADC file of this machine's
    out = subprocess.run(
        [sys.executable, "-c", CODE],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return seen, json.loads(out.stdout)


def user_key_file(fake: FakeGCP, path: Path) -> Path:
    """A service-account key file (``gcloud iam service-accounts keys create``), its
    tokens from the fake's token endpoint."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": fake.project,
                "private_key_id": "k1",
                "private_key": pem.decode(),
                "client_email": USER_ACCOUNT,
                "client_id": "1",
                "token_uri": fake.oauth.token_uri,
            }
        )
    )
    return path


@pytest.mark.parametrize(
    "said",
    [{"RELAUNCH_CREDENTIALS": "metadata-server"}, {"RELAUNCH_ON_GCE": "1"}],
    ids=["backend-says-metadata-server", "gce-vm-of-an-older-agent"],
)
def test_a_cloud_job_signs_with_its_machines_service_account(
    fake_gcp: FakeGCP, machine: MetadataServer, tmp_path: Path, said: dict[str, str]
) -> None:
    """On Vertex AI and GCE the store reads the service account's token from the
    metadata server itself — once for many requests — without loading google-auth."""
    seen, heavy = signed_with(fake_gcp, tmp_path, GCE_METADATA_HOST=machine.host, **said)
    assert seen == {"Bearer machine-token-7f3a"}
    assert machine.tokens_issued == 1
    assert heavy == []


@pytest.mark.parametrize("where", ["GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG"])
def test_a_users_credential_file_wins_over_the_metadata_server(
    fake_gcp: FakeGCP, machine: MetadataServer, tmp_path: Path, where: str
) -> None:
    """A key the user put in the job (or gcloud's application-default file in the image)
    is what signs, even where the backend named the metadata server."""
    folder = tmp_path / "gcloud"
    path = user_key_file(fake_gcp, folder / "application_default_credentials.json")
    value = str(path) if where == "GOOGLE_APPLICATION_CREDENTIALS" else str(folder)
    seen, _ = signed_with(
        fake_gcp,
        tmp_path,
        RELAUNCH_CREDENTIALS="metadata-server",
        GCE_METADATA_HOST=machine.host,
        **{where: value},
    )
    assert seen == {f"Bearer {fake_gcp.oauth.token_for(USER_ACCOUNT)}"}
    assert fake_gcp.oauth.issued == 1
    assert machine.tokens_issued == 0


def test_without_the_backends_word_application_default_credentials_sign(
    fake_gcp: FakeGCP, machine: MetadataServer, tmp_path: Path
) -> None:
    """The local backend says nothing: the store asks google-auth, as it always did —
    here on a machine whose metadata server google-auth finds by its own ping."""
    seen, heavy = signed_with(
        fake_gcp, tmp_path, GCE_METADATA_HOST=machine.host, GCE_METADATA_IP=machine.host
    )
    assert seen == {"Bearer machine-token-7f3a"}
    assert "google.auth.compute_engine" in heavy  # google-auth's own path, not the store's


def test_an_unknown_credential_source_is_a_one_line_error(
    fake_gcp: FakeGCP, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAUNCH_CREDENTIALS", "workload-identity")
    monkeypatch.setattr("relaunch.gcp.endpoints.is_local_emulator", lambda url: False)
    fake_gcp.gcs.create_bucket("b")
    with pytest.raises(CredentialsError) as e:
        GCSStore("gs://b/job").get("k")
    assert "RELAUNCH_CREDENTIALS='workload-identity'" in str(e.value)
    assert "\n" not in str(e.value) and e.value.hint
    assert fake_gcp.requests("storage") == []  # refused before anything was sent


@pytest.fixture
def in_a_job(
    fake_gcp: FakeGCP, machine: MetadataServer, monkeypatch: pytest.MonkeyPatch
) -> GCSStore:
    """A store in this process, in a job whose backend named the metadata server."""
    monkeypatch.setenv("RELAUNCH_CREDENTIALS", "metadata-server")
    monkeypatch.setenv("GCE_METADATA_HOST", machine.host)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(fake_gcp.root / "no-gcloud"))
    monkeypatch.setattr("relaunch.gcp.endpoints.is_local_emulator", lambda url: False)
    return GCSStore("gs://b/job", retry_initial=0.01, retry_timeout=2.0)


def test_a_token_is_fetched_again_before_it_expires(
    in_a_job: GCSStore, machine: MetadataServer
) -> None:
    machine.lifetime = 2  # used for half its life: a fresh one after a second
    gen = in_a_job.put("k", b"v")
    deadline = time.monotonic() + 60
    while machine.tokens_issued < 2:
        assert in_a_job.get("k") == (b"v", gen)
        assert time.monotonic() < deadline, "the token was never renewed"
    assert machine.tokens_issued == 2  # renewed once, not on every request


def test_the_token_comes_over_the_stores_own_connections(
    in_a_job: GCSStore, machine: MetadataServer
) -> None:
    """No second HTTP stack for the token: the metadata server is asked over the store's
    pool of standard-library connections, kept alive there like the store's own."""
    from relaunch.store.http_pool import HttpPool

    in_a_job.put("k", b"v")
    wire = in_a_job._wire
    assert isinstance(wire._pool, HttpPool) and wire._credentials._pool is wire._pool
    assert ("http", "127.0.0.1", machine.http.port) in wire._pool._idle
    assert machine.tokens_issued == 1


def test_a_refused_token_is_an_error_that_says_what_to_check(
    fake_gcp: FakeGCP, in_a_job: GCSStore, machine: MetadataServer
) -> None:
    machine.refuse = 403
    with pytest.raises(StoreError) as e:
        in_a_job.get("k")
    assert "refused a token: 403" in str(e.value) and "service account" in (e.value.hint or "")
    assert "\n" not in str(e.value)
    assert fake_gcp.requests("storage") == []  # nothing unsigned went out


def test_a_metadata_server_that_does_not_answer_is_retried(
    fake_gcp: FakeGCP, in_a_job: GCSStore, machine: MetadataServer
) -> None:
    machine.stop()  # its host restarts: connection refused
    with pytest.raises(StoreError) as e:
        in_a_job.get("k")
    assert "did not answer" in str(e.value) and "MetadataUnreachable" in str(e.value)


WRAPPER = (
    "import json, sys, relaunch.gcp.endpoints as e;"
    "e.is_local_emulator = e.is_local_emulator if sys.argv[1] == 'emulator' else lambda url: False;"
    "from relaunch.runtime.wrapper import main;"
    "code = main(['--', sys.executable, '-c', 'print(1)']);"
    "heavy = ('urllib3', 'requests', 'google.auth', 'google.cloud.', 'cryptography');"
    "loaded = sorted(m for m in sys.modules if m.startswith(heavy));"
    "open(sys.argv[2], 'w').write(json.dumps({'code': code, 'loaded': loaded}))"
)


@pytest.mark.parametrize("path", ["emulator", "metadata-server"])
def test_a_wrapper_loads_neither_urllib3_nor_google_auth(
    fake_gcp: FakeGCP, machine: MetadataServer, tmp_path: Path, path: str
) -> None:
    """The runtime wrapper of a run, from its start to its command's end, on a loopback
    emulator (anonymous) and in a job whose backend named the metadata server (signed,
    its token fetched over the same standard-library connections as its requests)."""
    from relaunch.runs import keys
    from relaunch.store.base import put_json

    put_json(GCSStore("gs://b/job"), keys.run_key("r1"), {"attempt": 1})
    seen = signatures_seen(fake_gcp)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GCE_METADATA", "GOOGLE_A"))}
    env.pop("RELAUNCH_CREDENTIALS", None)
    env.update(
        RELAUNCH_RUN_ID="r1",
        RELAUNCH_ATTEMPT="1",
        RELAUNCH_STORE="gs://b/job",
        RELAUNCH_SCRATCH=str(tmp_path / "scratch"),
        CLOUDSDK_CONFIG=str(tmp_path / "no-gcloud"),
    )
    if path == "metadata-server":
        env.update(RELAUNCH_CREDENTIALS="metadata-server", GCE_METADATA_HOST=machine.host)
    report = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, path, str(report)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(report.read_text()) == {"code": 0, "loaded": []}
    if path == "metadata-server":
        assert seen == {"Bearer machine-token-7f3a"} and machine.tokens_issued == 1
    else:
        assert seen == {""} and machine.tokens_issued == 0


def signatures_seen(fake: FakeGCP) -> set[str]:
    """The ``Authorization`` headers of Cloud Storage requests from now on."""
    seen: set[str] = set()

    def after(api: str, req: Request, res: Response) -> None:
        if api == "storage":
            seen.add(req.headers.get("authorization", ""))

    fake.router.after = after
    return seen


def test_gclouds_file_in_the_home_folder_counts_as_the_users(tmp_path: Path) -> None:
    """Where google-auth looks without ``CLOUDSDK_CONFIG``: ``~/.config/gcloud``."""
    from relaunch.store.gcs_auth import use_metadata_server

    env = {"RELAUNCH_CREDENTIALS": "metadata-server", "HOME": str(tmp_path)}
    assert use_metadata_server(env)
    adc = tmp_path / ".config" / "gcloud" / "application_default_credentials.json"
    adc.parent.mkdir(parents=True)
    adc.write_text("{}")
    assert not use_metadata_server(env)
    assert not use_metadata_server({"HOME": str(tmp_path / "elsewhere")})  # nobody said so


# -- a token refused by Cloud Storage, a token that cannot be sent ---------------------


def test_a_token_refetched_after_a_401_is_retried_like_a_request(
    fake_gcp: FakeGCP, in_a_job: GCSStore, machine: MetadataServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token revoked early: the new one is fetched within the call's retries, so a
    metadata server that does not answer right then delays the call, no more."""
    from relaunch.store.gcs_auth import MetadataUnreachable

    gen = in_a_job.put("k", b"v")
    credentials = in_a_job._wire._credentials
    fetch = credentials.refresh
    down = [MetadataUnreachable("metadata server: ConnectionRefusedError: refused")]

    def refresh(request: object = None) -> None:
        if down:
            raise down.pop()
        fetch(request)

    monkeypatch.setattr(credentials, "refresh", refresh)
    fake_gcp.faults.fail("storage", status=401, method="GET", message="Invalid Credentials")
    assert in_a_job.get("k") == (b"v", gen)
    assert down == [] and machine.tokens_issued == 2


def test_a_401_while_the_metadata_server_is_down_is_a_store_error(
    fake_gcp: FakeGCP, in_a_job: GCSStore, machine: MetadataServer
) -> None:
    in_a_job.put("k", b"v")
    machine.stop()  # its host restarts, and with it the connections kept alive to it
    in_a_job._wire._pool.clear()
    fake_gcp.faults.fail("storage", status=401, method="GET", message="Invalid Credentials")
    with pytest.raises(StoreError) as e:
        in_a_job.get("k")
    assert "did not answer" in str(e.value) and "MetadataUnreachable" in str(e.value)


def told(e: BaseException) -> str:
    """Everything a log of ``e`` with its traceback would show."""
    return "".join(traceback.format_exception(type(e), e, e.__traceback__))


def test_a_metadata_token_with_a_line_break_is_refused_and_never_shown(
    fake_gcp: FakeGCP, in_a_job: GCSStore, machine: MetadataServer
) -> None:
    machine.token = "ya29.secret-7f3a\r\nX-Injected: 1"  # a broken or hostile metadata server
    with pytest.raises(StoreError) as e:
        in_a_job.get("k")
    assert "not printable ASCII" in str(e.value) and "secret-7f3a" not in told(e.value)
    assert fake_gcp.requests("storage") == []


@pytest.fixture
def with_adc(fake_gcp: FakeGCP, monkeypatch: pytest.MonkeyPatch) -> Callable[[Any], GCSStore]:
    """A store in this process whose requests Application Default Credentials sign: the
    ones given (google-auth's own types), as ``google.auth.default()`` would find them."""
    for name in ("RELAUNCH_CREDENTIALS", "RELAUNCH_ON_GCE", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("relaunch.gcp.endpoints.is_local_emulator", lambda url: False)
    fake_gcp.gcs.create_bucket("b")

    def store(credentials: Any) -> GCSStore:
        monkeypatch.setattr(
            "google.auth.default", lambda scopes=None, **kw: (credentials, fake_gcp.project)
        )
        return GCSStore("gs://b/laptop", retry_initial=0.01, retry_timeout=1.0)

    return store


def test_an_adc_token_with_a_line_break_is_not_sent_nor_shown(
    fake_gcp: FakeGCP, with_adc: Callable[[Any], GCSStore]
) -> None:
    from google.oauth2.credentials import Credentials

    store = with_adc(Credentials("ya29.secret-9c1e\nX-Injected: 1"))  # no expiry: valid
    with pytest.raises(StoreError) as e:
        store.get("k")
    assert "not printable ASCII" in str(e.value) and "secret-9c1e" not in told(e.value)
    assert fake_gcp.requests("storage") == []


# -- a token endpoint that accepts and never answers -----------------------------------


@pytest.fixture
def silent_token_endpoint() -> Iterator[socket.socket]:
    """A listening socket nobody answers on: connections are accepted by the kernel,
    and the requests sent on them wait for ever."""
    hole = socket.create_server(("127.0.0.1", 0), backlog=64)
    yield hole
    hole.close()


def test_an_adc_token_endpoint_that_never_answers_is_a_store_error_in_time(
    with_adc: Callable[[Any], GCSStore],
    silent_token_endpoint: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from google.oauth2.credentials import Credentials

    monkeypatch.setattr("relaunch.store.gcs_auth.ADC_TIMEOUT", (5.0, 0.2))
    port = silent_token_endpoint.getsockname()[1]
    store = with_adc(
        Credentials(
            None,
            refresh_token="r",
            client_id="c",
            client_secret="s",
            token_uri=f"http://127.0.0.1:{port}/token",
        )
    )
    failed: list[StoreError] = []

    def read() -> None:
        try:
            store.get("k")
        except StoreError as e:
            failed.append(e)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=60)
    assert not reader.is_alive(), "the token refresh waits for ever"
    assert failed and "did not answer" in str(failed[0])


def test_a_refresh_that_hangs_holds_up_no_request_whose_token_is_valid(
    with_adc: Callable[[Any], GCSStore], silent_token_endpoint: socket.socket
) -> None:
    """One thread fetches a new token (its last was refused) from an endpoint slow to
    answer; the other threads go on with the token they have."""
    from google.oauth2.credentials import Credentials

    port = silent_token_endpoint.getsockname()[1]
    store = with_adc(
        Credentials(
            "ya29.valid",  # no expiry: valid
            refresh_token="r",
            client_id="c",
            client_secret="s",
            token_uri=f"http://127.0.0.1:{port}/token",
        )
    )
    gen = store.put("k", b"v")
    wire = store._wire

    def force_refresh() -> None:
        with contextlib.suppress(Exception):  # the endpoint goes away at the end
            wire._authorize("GET", str(wire.endpoint), {}, force=True)

    refresher = threading.Thread(target=force_refresh, daemon=True)
    refresher.start()
    silent_token_endpoint.settimeout(60)
    waiting, _ = silent_token_endpoint.accept()  # the refresh is under way
    got: list[tuple[bytes, int]] = []
    reader = threading.Thread(target=lambda: got.append(store.get("k")), daemon=True)
    reader.start()
    reader.join(timeout=30)
    waiting.close()
    refresher.join(timeout=60)
    assert got == [(b"v", gen)]
