"""A small HTTP/1.1 client on the standard library's ``http.client``: the store's transport.

:class:`HttpPool` keeps, per ``(scheme, host, port)``, a list of idle keep-alive
connections under one lock. A request takes one (or opens a new one) and owns it until
its answer is read; the connection goes back only when the answer was read to its end
and the server did not say it would close. A connection whose answer was not fully read
(a download given up half way), or on which anything failed, is closed, never reused:
the next request on it would otherwise read the rest of an old answer. Before an idle
connection is reused it is polled: one the server closed while it sat idle (its FIN
arrived, or stray bytes did) is dropped there instead of losing a request on it.

At most ``maxsize`` idle connections are kept per host; more may be open at once, so a
thread never waits for another's connection. Each request has a timeout (connect, and
each wait for bytes). No retries (the caller's, :class:`relaunch.store.gcs_wire.Wire`),
no redirects, no proxies, no compression.

TLS (an https endpoint: Google's) verifies the server's certificate and name with the
system's CAs, as ``ssl.create_default_context()`` does, but reads them from the hashed
CA folder (``/etc/ssl/certs`` on Debian and Ubuntu, or ``SSL_CERT_DIR``) one at a time,
when a chain needs one, instead of parsing the whole bundle into every process (~1.2 MB
each). Where that folder has no hashed names, or ``SSL_CERT_FILE`` names the CAs, the
default context loads them as usual; and a certificate the folder cannot verify is
tried once more with the default context (a CA appended to the bundle by hand): what
verifies is what the default context would verify.

Why not urllib3: imported into a runtime wrapper it costs 4.0 MB of private memory
(``http.client`` and ``ssl`` under it, and ``importlib.metadata``, which urllib3 2.x
imports); this module, ``http.client`` and ``ssl`` included, 1.6 MB.

:func:`is_transient` says which exceptions from here are a connection failing (worth
trying again) rather than a bug of ours. A header http.client refuses (a value with a
line break) is a ValueError whose message never holds the value: it may be a token.
"""

from __future__ import annotations

import http.client
import os
import re
import select
import socket
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

_Key = tuple[str, str, int]

#: a CA certificate's name in a folder OpenSSL looks CAs up in by subject hash
_HASHED = re.compile(r"[0-9a-f]{8}\.\d+$")


def is_transient(e: BaseException) -> bool:
    """Whether ``e`` is the connection failing, worth trying again on a new one: any
    OSError (refused, reset, timed out, a name that did not resolve, a broken TLS stream,
    a firewall's EPERM, out of sockets for a moment) and any ``http.client`` protocol
    error (an answer cut off or garbled). Not a certificate that does not verify: that
    is no accident of the network. Nor anything else (a bad URL, a bug of ours)."""
    if unverified(e):
        return False
    return isinstance(e, (OSError, http.client.HTTPException))


class Response:
    """An answer: ``status``, ``headers`` (case-insensitive ``get``) and ``data``; or, when
    streamed, a body still to be read with :meth:`stream` or :meth:`read`, after which
    :meth:`release_conn` gives the connection back (or closes it if the body was not
    read to its end)."""

    def __init__(
        self,
        status: int,
        headers: Any,
        data: bytes,
        answer: http.client.HTTPResponse | None = None,
        conn: http.client.HTTPConnection | None = None,
        pool: HttpPool | None = None,
        key: _Key | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.data = data
        self._answer = answer
        self._conn = conn
        self._pool = pool
        self._key = key
        self._complete = False  # the body was read to its announced end

    def stream(self, amt: int) -> Iterator[bytes]:
        """The rest of the body, ``amt`` bytes at a time; a body cut short raises
        ``http.client.IncompleteRead`` (never a short download taken for a whole one)."""
        answer = self._answer
        if answer is None:
            if self.data:
                yield self.data
            return
        while True:
            piece = answer.read(amt)
            if not piece:
                if answer.length:  # bytes announced and never sent: the connection broke
                    raise http.client.IncompleteRead(b"", answer.length)
                self._complete = True
                return
            yield piece

    def read(self) -> bytes:
        """The rest of the body, at once; then the connection is released."""
        if self._answer is None:
            return self.data
        try:
            self.data = self._answer.read()  # a body cut short raises IncompleteRead
            self._complete = True
        finally:
            self.release_conn()
        return self.data

    def release_conn(self) -> None:
        """Give the connection back if the body was read to its end, else close it.
        Idempotent."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        answer = self._answer
        if self._complete and self._pool is not None and self._key and answer is not None:
            self._pool._give_back(self._key, conn, answer)
        else:
            conn.close()


class HttpPool:
    """Thread-safe: any number of threads may call :meth:`request` at once."""

    def __init__(self, maxsize: int = 32, *, user_agent: str = "relaunch") -> None:
        self.maxsize = maxsize
        self.user_agent = user_agent
        self._lock = threading.Lock()
        self._idle: dict[_Key, list[http.client.HTTPConnection]] = {}
        self._tls: Any = None  # ssl.SSLContext, made for the first https connection
        self._tls_lazy = False  # its CAs are looked up in the hashed folder, one by one
        self._lazy: Any = None  # that context, once there was one

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float,
        stream: bool = False,
    ) -> Response:
        """One exchange: the answer whatever its status. With ``stream`` the body is not
        read: the caller reads it (:meth:`Response.stream`) and releases the connection."""
        parts = urlsplit(url)
        scheme = parts.scheme
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        key = (scheme, parts.hostname, parts.port or (443 if scheme == "https" else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        sent = {"User-Agent": self.user_agent, **(headers or {})}
        conn = self._take(key, timeout) or self._open(key, timeout)
        try:
            conn.request(method, target, body=body, headers=sent)
            answer = conn.getresponse()
            if stream:
                return Response(answer.status, answer.headers, b"", answer, conn, self, key)
            data = answer.read()
        except BaseException as e:
            conn.close()  # whatever happened to it, nobody reads the rest of this answer
            lazy = self._lazy is not None and getattr(conn, "_context", None) is self._lazy
            if lazy and unverified(e):
                # the hashed folder lacks the chain's CA: all the system's CAs, then again
                # (nothing was sent: the handshake comes first)
                self._tls_full()
                return self.request(
                    method, url, body=body, headers=headers, timeout=timeout, stream=stream
                )
            if isinstance(e, ValueError) and not unverified(e):
                # http.client refusing a header puts the header's value (a bearer token)
                # in its message: nothing of it goes on
                raise ValueError(
                    f"http.client refused the {method} request to {parts.hostname}: "
                    f"{type(e).__name__} (its message is not shown: it may hold a header)"
                ) from None
            raise
        self._give_back(key, conn, answer)
        return Response(answer.status, answer.headers, data)

    def clear(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    def idle(self) -> int:
        """How many connections wait for reuse (for tests)."""
        with self._lock:
            return sum(len(c) for c in self._idle.values())

    # -- connections ------------------------------------------------------------

    def _take(self, key: _Key, timeout: float) -> http.client.HTTPConnection | None:
        """An idle connection to ``key`` still open, or None."""
        while True:
            with self._lock:
                conns = self._idle.get(key)
                if not conns:
                    return None
                conn = conns.pop()
            sock = conn.sock
            if sock is not None and not _readable(sock):
                conn.timeout = timeout
                sock.settimeout(timeout)
                return conn
            conn.close()  # closed by the server while idle (or it sent what nobody asked)

    def _open(self, key: _Key, timeout: float) -> http.client.HTTPConnection:
        scheme, host, port = key
        if scheme == "http":
            return http.client.HTTPConnection(host, port, timeout=timeout)
        with self._lock:
            if self._tls is None:
                self._tls, self._tls_lazy = tls_context()
                self._lazy = self._tls if self._tls_lazy else None
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=self._tls)

    def _tls_full(self) -> None:
        """From now on, TLS with every CA of the system loaded (the default context)."""
        import ssl

        with self._lock:
            if self._tls_lazy:
                self._tls, self._tls_lazy = ssl.create_default_context(), False

    def _give_back(
        self, key: _Key, conn: http.client.HTTPConnection, answer: http.client.HTTPResponse
    ) -> None:
        """Keep ``conn``, whose answer was read to its end, for the next request if the
        connection stays open; close it otherwise."""
        if not answer.isclosed() or answer.will_close or conn.sock is None:
            conn.close()
            return
        with self._lock:
            conns = self._idle.setdefault(key, [])
            if len(conns) < self.maxsize:
                conns.append(conn)
                return
        conn.close()


def tls_context(env: Mapping[str, str] = os.environ) -> tuple[Any, bool]:
    """``(context, lazy)``: a client context that verifies certificates and host names
    against the system's CAs, looked up one by one in the hashed CA folder when there is
    one (``lazy``), else the default context (every CA of the bundle loaded)."""
    import ssl

    if not env.get("SSL_CERT_FILE"):
        folder = ssl.get_default_verify_paths().capath  # SSL_CERT_DIR, or OpenSSL's own
        if folder and _hashed(folder):
            return ssl.create_default_context(capath=folder), True
    return ssl.create_default_context(), False


def _hashed(folder: str) -> bool:
    try:
        with os.scandir(folder) as entries:
            return any(_HASHED.match(entry.name) for entry in entries)
    except OSError:
        return False


def unverified(e: BaseException) -> bool:
    """Whether ``e`` is a server's TLS certificate that did not verify."""
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(e, ssl.SSLCertVerificationError)


def _readable(sock: socket.socket) -> bool:
    """Whether an idle connection has something to read: its end of file (the server
    closed it) or bytes nobody asked for. Either way it is not reused."""
    pending = getattr(sock, "pending", None)  # TLS: bytes already decrypted
    if pending is not None and pending():
        return True
    try:
        poller = select.poll()
    except AttributeError:  # no poll() (Windows)
        return bool(select.select([sock], [], [], 0)[0])
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))
