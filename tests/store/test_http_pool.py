"""The store's transport (store/http_pool.py): keep-alive connections from the standard
library, reused only when their answer was read to the end, and the failures worth
trying again told apart from our own bugs.

A small HTTP/1.1 server here counts connections and can misbehave on purpose; the
store-level cases run on the fake Cloud Storage with its ``drop`` fault.
"""

from __future__ import annotations

import errno
import http.client
import io
import shutil
import socket
import ssl
import threading
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from relaunch.errors import StoreError
from relaunch.store.gcs import GCSStore
from relaunch.store.gcs_transfer import download
from relaunch.store.gcs_wire import Wire
from relaunch.store.http_pool import HttpPool, Response, is_transient
from tests.fakegcp.fake import FakeGCP

BIG = bytes(range(256)) * 4096  # 1 MiB


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def do_GET(self) -> None:
        path = self.path
        if path == "/big":
            body = BIG
        elif path == "/drop-once" and not self.server.dropped:
            self.server.dropped = True
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)  # 10 of 1000 bytes, then the connection breaks
            self.wfile.flush()
            self.close_connection = True
            return
        elif path == "/then-close":  # kept alive, then closed while idle (a server's timeout)
            body = b"later"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True
            return
        elif path == "/close":  # an answer after which the server closes: not reusable
            body = b"bye"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        else:
            body = f"answer to {path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[::-1])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.connections = 0
        self.dropped = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_connections_are_kept_alive_and_reused(server: _Server) -> None:
    pool = HttpPool()
    for i in range(20):
        answer = pool.request("GET", f"{server.url}/k{i}", timeout=10)
        assert (answer.status, answer.data) == (200, f"answer to /k{i}".encode())
    answer = pool.request("POST", f"{server.url}/echo", body=b"abc", timeout=10)
    assert answer.data == b"cba"
    assert server.connections == 1 and pool.idle() == 1


def test_an_answer_the_server_closes_after_is_not_kept(server: _Server) -> None:
    pool = HttpPool()
    assert pool.request("GET", f"{server.url}/close", timeout=10).data == b"bye"
    assert pool.idle() == 0
    assert pool.request("GET", f"{server.url}/a", timeout=10).data == b"answer to /a"
    assert server.connections == 2


def test_a_half_read_streamed_answer_does_not_poison_the_pool(server: _Server) -> None:
    """A download given up half way leaves the rest of its body on its connection: that
    connection is closed, and the next request gets its own answer on a fresh one."""
    pool = HttpPool()
    answer = pool.request("GET", f"{server.url}/big", timeout=10, stream=True)
    first = next(answer.stream(4096))
    assert first == BIG[:4096]
    answer.release_conn()
    assert pool.idle() == 0  # closed, not given back
    for i in range(3):
        again = pool.request("GET", f"{server.url}/k{i}", timeout=10)
        assert again.data == f"answer to /k{i}".encode()
    assert server.connections == 2  # the half-read one, then one fresh one kept alive


def test_a_streamed_answer_read_to_the_end_gives_its_connection_back(server: _Server) -> None:
    pool = HttpPool()
    answer = pool.request("GET", f"{server.url}/big", timeout=10, stream=True)
    assert b"".join(answer.stream(1 << 16)) == BIG
    answer.release_conn()
    answer.release_conn()  # idempotent
    assert pool.idle() == 1
    assert pool.request("GET", f"{server.url}/a", timeout=10).data == b"answer to /a"
    assert server.connections == 1


def test_an_answer_cut_off_is_an_error_worth_retrying_and_its_connection_is_closed(
    server: _Server,
) -> None:
    pool = HttpPool()
    with pytest.raises(http.client.IncompleteRead) as info:
        pool.request("GET", f"{server.url}/drop-once", timeout=10)
    assert is_transient(info.value)
    assert pool.idle() == 0
    assert pool.request("GET", f"{server.url}/drop-once", timeout=10).data == (
        b"answer to /drop-once"
    )


def test_a_streamed_answer_cut_off_raises_instead_of_ending_short(server: _Server) -> None:
    pool = HttpPool()
    answer = pool.request("GET", f"{server.url}/drop-once", timeout=10, stream=True)
    got = bytearray()
    with pytest.raises(http.client.IncompleteRead):
        for piece in answer.stream(100):
            got += piece
    answer.release_conn()
    assert bytes(got) == b"x" * 10 and pool.idle() == 0


def test_a_connection_the_server_closed_while_idle_is_not_used(server: _Server) -> None:
    """The server drops an idle keep-alive connection (its idle timeout): the next
    request notices before sending and opens a new connection, no error."""
    import time

    pool = HttpPool()
    assert pool.request("GET", f"{server.url}/then-close", timeout=10).data == b"later"
    assert pool.idle() == 1  # the server did not say it would close
    time.sleep(0.2)  # its FIN arrives
    assert pool.request("GET", f"{server.url}/b", timeout=10).data == b"answer to /b"
    assert server.connections == 2


def test_a_header_http_client_refuses_is_an_error_that_does_not_show_it(server: _Server) -> None:
    """http.client puts a refused header's value in its message: a token, in the
    Authorization header. What the pool raises holds none of it."""
    pool = HttpPool()
    with pytest.raises(ValueError) as info:
        pool.request(
            "GET", f"{server.url}/a", headers={"Authorization": "Bearer s3cr3t\r\nX: 1"}, timeout=10
        )
    told = "".join(traceback.format_exception(type(info.value), info.value, None))
    assert "refused the GET request to 127.0.0.1" in told and "s3cr3t" not in told
    assert pool.request("GET", f"{server.url}/a", timeout=10).data == b"answer to /a"


def _in_threads(work: Any, n: int, timeout: float) -> None:
    """``work(0)`` … ``work(n - 1)``, each in its own thread, all at once."""
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)


def test_many_threads_at_once_each_get_their_own_answer(server: _Server) -> None:
    pool = HttpPool(maxsize=32)
    errors: list[BaseException] = []
    wrong: list[tuple[int, int]] = []
    start = threading.Barrier(32)

    def work(n: int) -> None:
        try:
            start.wait(timeout=30)
            for i in range(20):
                if i % 5 == 0:
                    answer = pool.request("GET", f"{server.url}/big", timeout=30, stream=True)
                    if b"".join(answer.stream(1 << 16)) != BIG:
                        wrong.append((n, i))
                    answer.release_conn()
                    continue
                body = f"{n}:{i}".encode() * (n + 1)
                if i % 2:
                    got = pool.request("POST", f"{server.url}/t", body=body, timeout=30).data
                    if got != body[::-1]:
                        wrong.append((n, i))
                elif pool.request("GET", f"{server.url}/{n}/{i}", timeout=30).data != (
                    f"answer to /{n}/{i}".encode()
                ):
                    wrong.append((n, i))
        except BaseException as e:
            errors.append(e)

    _in_threads(work, 32, timeout=120)
    assert errors == [] and wrong == []
    assert pool.idle() <= 32 and server.connections <= 32 * 20


@pytest.mark.parametrize(
    "error",
    [
        http.client.RemoteDisconnected("Remote end closed connection without response"),
        http.client.BadStatusLine("HTTP/1.1 2"),
        http.client.IncompleteRead(b"ab", 10),
        ConnectionResetError(errno.ECONNRESET, "reset"),
        ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
        ConnectionAbortedError(errno.ECONNABORTED, "aborted"),
        BrokenPipeError(errno.EPIPE, "broken pipe"),
        TimeoutError(errno.ETIMEDOUT, "Connection timed out"),  # socket.timeout too
        TimeoutError("timed out"),
        OSError(errno.ENETUNREACH, "Network is unreachable"),
        OSError(errno.EHOSTUNREACH, "No route to host"),
        PermissionError(errno.EPERM, "Operation not permitted"),  # a firewall's DROP
        OSError(errno.EMFILE, "Too many open files"),
        OSError(errno.ENOBUFS, "No buffer space available"),
        OSError(errno.EBADF, "Bad file descriptor"),
        socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
        ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
        ssl.SSLZeroReturnError(6, "TLS/SSL connection has been closed"),
        http.client.LineTooLong("header line"),  # a garbled answer: asked again anew
        http.client.UnknownProtocol("HTTP/9"),
        http.client.CannotSendRequest("Request-sent"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_connection_failures_are_transient(error: BaseException) -> None:
    """Any OSError or http.client error: a request tried again goes on a new connection."""
    assert is_transient(error) and Wire.is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        ssl.SSLCertVerificationError(1, "certificate verify failed"),
        ValueError("not an http(s) URL"),
        TypeError("expected bytes"),
        KeyError("x-goog-generation"),
        AttributeError("'NoneType' object has no attribute 'sendall'"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_bugs_and_refusals_are_not_transient(error: BaseException) -> None:
    assert not is_transient(error) and not Wire.is_transient(error)


# -- the store on the fake Cloud Storage -----------------------------------------------


@pytest.fixture
def gcs(fake_gcp: FakeGCP) -> GCSStore:
    fake_gcp.gcs.create_bucket("b")
    return GCSStore("gs://b/root", retry_initial=0.01)


def test_a_connection_dropped_mid_answer_is_retried_on_a_fresh_one(
    fake_gcp: FakeGCP, gcs: GCSStore
) -> None:
    gen = gcs.put("k", b"v" * 1000)
    gcs.get("k")
    pool = gcs._wire._pool
    (conns,) = pool._idle.values()
    (before,) = conns
    fault = fake_gcp.faults.drop("storage", method="GET", times=1)
    assert gcs.get("k") == (b"v" * 1000, gen)
    assert fault.hits == 1
    (conns,) = pool._idle.values()
    assert conns != [before] and before.sock is None  # the broken one was closed
    assert [m for _, m, p in fake_gcp.requests("storage")[-2:]] == ["GET", "GET"]


def test_a_write_whose_answer_was_cut_off_is_still_ours(fake_gcp: FakeGCP, gcs: GCSStore) -> None:
    """The create lands, its answer breaks off: the retry meets 412, and the write id
    says the object is ours (as with an answer lost to a 503)."""
    fake_gcp.faults.drop("storage", method="POST", times=1)
    gen = gcs.put("lease", b"me", if_generation_match=0)
    assert gcs.get("lease") == (b"me", gen)


def test_a_download_cut_off_resumes_where_it_stopped(
    fake_gcp: FakeGCP, gcs: GCSStore, tmp_path: Path
) -> None:
    data = bytes(range(256)) * (12 * 1024)  # 3 MiB
    gen = gcs.put("ckpt", data)
    fake_gcp.faults.drop("storage", method="GET", path="ckpt", times=2)
    out = tmp_path / "ckpt"
    assert gcs.download_file("ckpt", out) == gen
    assert out.read_bytes() == data
    reads = [p for _, m, p in fake_gcp.requests("storage") if m == "GET" and p.endswith("ckpt")]
    assert len(reads) == 3  # cut off, its resumption cut off too, the rest


def refuse_connections(monkeypatch: pytest.MonkeyPatch, error: OSError, times: int) -> list[Any]:
    """New connections fail with ``error`` the first ``times`` times (a firewall's DROP
    is EPERM; EMFILE and ENOBUFS come from a busy machine); the attempts are returned."""
    real = socket.create_connection
    attempts: list[Any] = []

    def connect(*args: Any, **kwargs: Any) -> socket.socket:
        attempts.append(args[0])
        if len(attempts) <= times:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", connect)
    return attempts


@pytest.mark.parametrize(
    "error",
    [
        PermissionError(errno.EPERM, "Operation not permitted"),
        OSError(errno.EMFILE, "Too many open files"),
        OSError(errno.ENOBUFS, "No buffer space available"),
    ],
    ids=lambda e: errno.errorcode[e.errno],
)
def test_any_connection_failure_is_retried(
    gcs: GCSStore, monkeypatch: pytest.MonkeyPatch, error: OSError
) -> None:
    gen = gcs.put("k", b"v")
    gcs._wire._pool.clear()  # the next request opens a connection
    attempts = refuse_connections(monkeypatch, error, times=2)
    assert gcs.get("k") == (b"v", gen)
    assert len(attempts) == 3


def test_a_connection_failure_that_lasts_is_a_store_error(
    fake_gcp: FakeGCP, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_gcp.gcs.create_bucket("b")
    store = GCSStore("gs://b/root", retry_initial=0.01, retry_timeout=0.5)
    store.put("k", b"v")
    store._wire._pool.clear()
    attempts = refuse_connections(
        monkeypatch, PermissionError(errno.EPERM, "Operation not permitted"), times=10**6
    )
    with pytest.raises(StoreError) as info:
        store.get("k")
    assert "did not answer for 'k'" in str(info.value) and "PermissionError" in str(info.value)
    assert len(attempts) > 1


def test_a_failure_no_retry_mends_is_a_one_line_store_error_at_once(
    gcs: GCSStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a connection failing (a bug, say): not retried, and not raised raw either —
    every failure of a store call is a StoreError, whose message is one line."""
    gcs.put("k", b"v")
    calls: list[str] = []

    def broken(method: str, url: str, **kwargs: Any) -> Any:
        calls.append(method)
        raise TypeError("expected bytes\nand a second line")

    monkeypatch.setattr(gcs._wire._pool, "request", broken)
    with pytest.raises(StoreError) as info:
        gcs.get("k")
    assert calls == ["GET"]
    assert info.value.message == (
        "Cloud Storage call for 'k' in gs://b/root failed: TypeError: expected bytes"
    )
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_local_disk_that_fails_during_a_download_is_not_retried(
    fake_gcp: FakeGCP, gcs: GCSStore
) -> None:
    """A full disk is no connection breaking off: the download does not resume."""
    gcs.put("ckpt", b"x" * 1000)

    class Full(io.BytesIO):
        def write(self, data: Any) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    before = len(fake_gcp.requests("storage"))
    with pytest.raises(OSError) as info:
        download(gcs._wire, gcs._name("ckpt"), "'ckpt'", Full())
    assert info.value.errno == errno.ENOSPC
    assert len(fake_gcp.requests("storage")) == before + 1


def test_a_proxys_page_instead_of_cloud_storages_answer_is_a_store_error(
    gcs: GCSStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy in the way answers 200 with a page of its own: every call fails with a
    StoreError, as any other failure of the store (a runtime's heartbeat catches those)."""
    gcs.put("k", b"v")
    headers = http.client.HTTPMessage()
    headers["Content-Type"] = "text/html"
    page = Response(200, headers, b"<html>sign in to continue</html>")
    monkeypatch.setattr(gcs._wire._pool, "request", lambda *args, **kwargs: page)
    calls = {
        "put": lambda: gcs.put("k", b"v", if_generation_match=1),
        "get": lambda: gcs.get("k"),
        "stat": lambda: gcs.stat("k"),
        "list": lambda: gcs.list(""),
    }
    for name, call in calls.items():
        with pytest.raises(StoreError) as info:
            call()
        assert "proxy" in (info.value.hint or ""), name


def test_32_threads_on_one_store_each_get_their_own_objects(gcs: GCSStore) -> None:
    errors: list[BaseException] = []
    wrong: list[str] = []

    def work(n: int) -> None:
        try:
            for i in range(8):
                key = f"t{n}/{i}"
                data = f"{n}-{i}-".encode() * (1 + 37 * n)
                gen = gcs.put(key, data)
                if gcs.get(key) != (data, gen):
                    wrong.append(key)
                if (meta := gcs.stat(key)) is None or meta.size != len(data):
                    wrong.append(key)
            if len(gcs.list(f"t{n}/").objects) != 8:
                wrong.append(f"t{n}/")
        except BaseException as e:
            errors.append(e)

    _in_threads(work, 32, timeout=240)
    assert errors == [] and wrong == []
    assert gcs._wire._pool.idle() <= 32


# -- TLS: the system's CAs, looked up one by one ----------------------------------------


@pytest.fixture
def tls_endpoint(fake_gcp: FakeGCP, tmp_path: Path) -> tuple[str, Path, Path]:
    """``(https URL of the fake, CA file, hashed CA folder)``, both with the system's
    CAs and the fake's throwaway certificate."""
    from tests.fakegcp.tls import self_signed

    if shutil.which("openssl") is None or not ssl.get_default_verify_paths().capath:
        pytest.skip("needs the openssl tool and the system's CA folder (ca-certificates)")
    context, cafile, cadir = self_signed(tmp_path / "tls")
    fake_gcp.gcs.create_bucket("b")
    return fake_gcp.add_endpoint("tls", tls=context), cafile, cadir


def test_https_looks_up_only_the_cas_a_chain_needs(
    tls_endpoint: tuple[str, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _, cadir = tls_endpoint
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", str(cadir))
    pool = HttpPool()
    answer = pool.request("GET", f"{url}/storage/v1/b/b/o", timeout=10)
    assert answer.status == 200 and pool._tls_lazy
    assert pool._tls.cert_store_stats()["x509_ca"] == 1  # not the bundle's ~140
    assert pool.request("GET", f"{url}/storage/v1/b/b/o", timeout=10).status == 200
    assert pool.idle() == 1  # kept alive over TLS too


def test_a_ca_the_folder_lacks_is_found_among_all_the_systems(
    tls_endpoint: tuple[str, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CA appended to the bundle by hand and never hashed into the folder: the
    default context (every CA of the bundle) verifies the chain, as it always would."""
    from relaunch.store import http_pool

    url, cafile, _ = tls_endpoint
    empty = tmp_path / "other-cas"
    empty.mkdir()
    (empty / "00000000.0").write_text("")  # hashed, and without the fake's CA
    monkeypatch.setenv("SSL_CERT_DIR", str(empty))
    monkeypatch.setenv("SSL_CERT_FILE", str(cafile))  # what the default context loads
    lazy = http_pool.tls_context
    monkeypatch.setattr(http_pool, "tls_context", lambda: lazy(env={}))
    pool = HttpPool()
    assert pool.request("GET", f"{url}/storage/v1/b/b/o", timeout=10).status == 200
    assert not pool._tls_lazy


def test_a_certificate_that_does_not_verify_is_a_store_error_at_once(
    tls_endpoint: tuple[str, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a connection to try again for two minutes: the error names the endpoint and
    what to install."""
    import time

    url, _, _ = tls_endpoint
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)  # the system's CAs: not the fake's
    monkeypatch.setenv("RELAUNCH_STORAGE_ENDPOINT", url)
    monkeypatch.setattr("relaunch.gcp.endpoints.is_local_emulator", lambda url: True)
    store = GCSStore("gs://b/root", retry_initial=0.01, retry_timeout=60)
    started = time.monotonic()
    with pytest.raises(StoreError) as info:
        store.get("k")
    assert time.monotonic() - started < 10
    assert f"TLS certificate of {url} did not verify" in str(info.value)
    assert "ca-certificates" in (info.value.hint or "")
