"""The wire under GCSStore: Cloud Storage's JSON API over a small pool of the standard
library's HTTP connections (``http_pool.py``).

One :class:`Wire` per store. It knows where the API is (``RELAUNCH_STORAGE_ENDPOINT``,
``STORAGE_EMULATOR_HOST`` or Google), signs requests with the credentials
``gcs_auth.py`` picks (google-auth's, or the metadata server's token in a cloud job;
none for a plain-http loopback emulator), retries 408/429/5xx, connection errors and
token fetches with exponential backoff within ``retry_timeout``, and turns every other
answer, and every other failure of a request, into relaunch's store errors.

Why not google-cloud-storage: in every runtime it cost ~45 MB of memory and 4 to 9 times
this wire's CPU per request (this: 0.1-0.25 ms; ``benchmarks/runtime_cost.py``), and a GET
of a missing object starts a bucket GET behind the caller's back. Why not urllib3 (which it used
before): imported into a runtime wrapper it cost 4.0 MB of private memory (http.client
and ssl, which it builds on, and ``importlib.metadata``, which urllib3 2.x imports,
included); ``http_pool.py`` costs 1.6 MB for the same keep-alive requests, and a wrapper
on a gs:// store went from 14.5 to 12.2 MB PSS. google-auth, where it signs (agents, laptops:
Application Default Credentials), refreshes its tokens on its own urllib3 transport;
the store's requests go over ``http_pool.py`` whatever signs them, so every process
runs the same request path.

Thread safety: a Wire may be used from any number of threads at once. The pool is
thread-safe (a connection belongs to one request at a time); the pool and the
credentials are built once under a lock, and a token is refreshed under that lock too
(one fetch at a time; a request whose token is valid takes no lock); each request keeps
its own state on its own stack. Nothing from google.*, urllib3 or http.client is
imported before the first request.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from relaunch.errors import ObjectNotFound, PreconditionFailed, StoreError

GOOGLE = "https://storage.googleapis.com"
_RETRIED = frozenset({408, 429, 500, 502, 503, 504})
_CREDENTIALS_HINT = (
    "check the machine's service account or run `gcloud auth application-default login`"
)
_PROXY_HINT = "check for a proxy between this machine and the storage endpoint"
PERMISSION_HINT = (
    "grant the caller roles/storage.objectAdmin on the bucket "
    "(gcloud storage buckets add-iam-policy-binding)"
)


def storage_endpoint() -> str:
    """Where the JSON API is: the configured endpoint, an emulator, or Google."""
    from relaunch.gcp.endpoints import resolve_endpoint

    url = resolve_endpoint("storage")
    if url is None and (host := os.environ.get("STORAGE_EMULATOR_HOST")):
        url = host if "://" in host else f"http://{host}"
    return (url or GOOGLE).rstrip("/")


class Answer:
    """A finished HTTP answer (status, headers, body), or a streamed one (``stream``)."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes, raw: Any) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.raw = raw  # an http_pool.Response whose body is still to read (stream=True)

    def json(self) -> dict[str, Any]:
        """The body's JSON object; anything else (a proxy's page) is a StoreError."""
        try:
            found = json.loads(self.body or b"{}")
        except ValueError:
            found = None
        if not isinstance(found, dict):
            raise StoreError(
                f"Cloud Storage answered {self.status} with a body that is not a JSON object",
                hint=_PROXY_HINT,
            )
        return found

    def generation(self) -> int:
        """The generation of the object whose content this is."""
        try:
            return int(self.headers["x-goog-generation"])
        except (KeyError, TypeError, ValueError):
            raise StoreError(
                f"Cloud Storage answered {self.status} without the object's generation",
                hint=_PROXY_HINT,
            ) from None


class Wire:
    """HTTP to one bucket's JSON API, with credentials, retries and error translation."""

    def __init__(
        self,
        bucket: str,
        url: str,
        *,
        retry_initial: float,
        retry_timeout: float,
        endpoint: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.url = url  # the store's URL, for messages
        self.endpoint = endpoint
        self.retry_initial = retry_initial
        self.retry_timeout = retry_timeout
        # One request waits at most this long, so a call with its retries stays near
        # retry_timeout (an agent's call_timeout: a hanging call must not outlive a lease).
        self.timeout = max(1.0, min(60.0, retry_timeout / 2))
        self._lock = threading.Lock()
        self._pool: Any = None
        self._credentials: Any = None
        self._auth_request: Any = None
        self._anonymous = False

    # -- set-up (once, lazily) --------------------------------------------------

    def _setup(self) -> None:
        with self._lock:
            if self._pool is not None:
                return
            from relaunch.gcp.endpoints import is_local_emulator
            from relaunch.store.http_pool import HttpPool

            if self.endpoint is None:
                self.endpoint = storage_endpoint()
            # maxsize: connections kept per host for threads that call at once (an
            # agent reads ahead with up to 32: agent/prefetch.py).
            pool = HttpPool(maxsize=32)
            self._anonymous = is_local_emulator(self.endpoint)
            if not self._anonymous:
                from relaunch.store.gcs_auth import credentials

                self._credentials, self._auth_request = credentials(pool)
            self._pool = pool

    def _authorize(
        self, method: str, url: str, headers: dict[str, str], force: bool = False
    ) -> None:
        """Add the credentials' header to ``headers`` (refreshed first when due, or
        with ``force``); a token that cannot be had is a StoreError with the fix."""
        if self._anonymous:
            return
        from relaunch.store.gcs_auth import refused, usable

        credentials = self._credentials
        try:
            if force or not credentials.valid:
                self._refresh(force)
            credentials.before_request(self._auth_request, method, url, headers)
        except Exception as e:
            if self.is_transient(e) or not refused(e):
                raise
            raise StoreError(
                f"Cloud Storage credentials could not be refreshed for {self.url}: {e}",
                hint=_CREDENTIALS_HINT,
            ) from None
        if not usable(credentials.token):  # it would go into a header, and from there a log
            raise StoreError(
                f"the credentials for {self.url} gave a token that is not printable ASCII "
                "(not shown, not sent)",
                hint=_CREDENTIALS_HINT,
            )

    def _refresh(self, force: bool) -> None:
        """Fetch a new token, one thread at a time. Under the lock only while fetching:
        a thread whose token is valid never waits for another's refresh; one that waited
        finds the token fetched for it (unless ``force``: the token was refused)."""
        with self._lock:
            if force or not self._credentials.valid:
                self._credentials.refresh(self._auth_request)

    # -- addresses --------------------------------------------------------------

    def object_path(self, name: str, upload: bool = False) -> str:
        root = "/upload/storage/v1" if upload else "/storage/v1"
        if upload:
            return f"{root}/b/{quote(self.bucket, safe='')}/o"
        return f"{root}/b/{quote(self.bucket, safe='')}/o/{quote(name, safe='')}"

    def list_path(self) -> str:
        return f"/storage/v1/b/{quote(self.bucket, safe='')}/o"

    # -- one call, retried ------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        where: str,
        query: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
        stream: bool = False,
        conditional: bool = False,
        deadline: float | None = None,
        on_send: Callable[[], None] | None = None,
    ) -> Answer:
        """Send one request (``path`` under the endpoint, or an absolute URL) and return
        an answer whose status is in ``ok``; retry what is worth retrying until
        ``deadline`` (default: ``retry_timeout`` from now); raise a store error else.
        ``on_send`` is called before each time the request goes out."""
        if self._pool is None:
            self._setup()
        base = path if "://" in path else f"{self.endpoint}{path}"
        url = f"{base}?{urlencode(query)}" if query else base
        deadline = deadline if deadline is not None else time.monotonic() + self.retry_timeout
        delay = self.retry_initial
        refreshed = stale = False
        last: Answer | None = None
        while True:
            try:
                if stale:  # a token revoked early: fetch a new one (retried like a request)
                    self._authorize(method, url, {}, force=True)
                    stale = False
                if on_send is not None:
                    on_send()
                answer = self.send(method, url, body=body, headers=headers, stream=stream)
            except StoreError:
                raise
            except Exception as e:  # connection refused/reset, a timeout, a token fetch
                if not self.is_transient(e):
                    raise self.failure(e, where) from None
                problem: str | int = self.describe(e)
            else:
                if answer.status in ok:
                    return answer
                if answer.status == 401 and not refreshed and not self._anonymous:
                    refreshed = stale = True  # once: a second 401 is a permission error
                    continue
                if answer.status not in _RETRIED:
                    raise self.error(answer, where, conditional)
                problem = answer.status
                last = answer
            now = time.monotonic()
            if now + delay > deadline:
                if last is not None and isinstance(problem, int):
                    raise self.error(last, where, conditional)
                raise StoreError(
                    f"Cloud Storage did not answer for {where} in {self.url}: {problem}",
                    hint="check the network and the storage endpoint",
                )
            time.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, max(self.retry_initial, 16.0))

    def send(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> Answer:
        """One HTTP exchange, no retry: the answer whatever its status."""
        if self._pool is None:
            self._setup()
        sent = dict(headers or {})
        self._authorize(method, url, sent)
        raw = self._pool.request(
            method, url, body=body, headers=sent, timeout=self.timeout, stream=stream
        )
        if stream and raw.status in (200, 206):
            return Answer(raw.status, raw.headers, b"", raw)
        return Answer(raw.status, raw.headers, raw.read(), None)

    def failure(self, e: BaseException, where: str) -> StoreError:
        """The store error for ``e``, a failure not worth retrying: a certificate that
        did not verify says what to install; anything else (no failure of the network
        relaunch knows) is named on one line. Raise it ``from None``: ``e``'s own
        message stays out of tracebacks and logs."""
        from relaunch.store.http_pool import unverified

        if unverified(e):
            why = getattr(e, "verify_message", "") or e
            return StoreError(
                f"the TLS certificate of {self.endpoint} did not verify: {why}",
                hint="install the system's CA certificates (ca-certificates) where relaunch "
                "runs, or set SSL_CERT_FILE to a bundle with the endpoint's CA",
            )
        return StoreError(
            f"Cloud Storage call for {where} in {self.url} failed: {self.describe(e)}",
            hint="no network failure relaunch knows to retry; if it persists, report it "
            "with the output of `relaunch --version`",
        )

    def describe(self, e: BaseException) -> str:
        """``e`` on one line for a message: its type and the first line of its text,
        with the current token, should the text hold it, masked."""
        lines = str(e).strip().splitlines()
        text = lines[0] if lines else ""
        token = getattr(self._credentials, "token", None)
        if isinstance(token, str) and token:
            text = text.replace(token, "<token>")
        text = text[:200]
        return f"{type(e).__name__}: {text}" if text else type(e).__name__

    @staticmethod
    def is_transient(e: BaseException) -> bool:
        """A connection-level failure worth trying again (never a bug of ours): the
        transport's (http_pool.is_transient: reset, refused, dropped mid-answer, timed
        out...), the metadata server not answering, or google-auth's TransportError."""
        from relaunch.store.http_pool import is_transient

        if is_transient(e):
            return True
        return type(e).__module__.startswith("google.auth") and type(e).__name__ == "TransportError"

    # -- errors -----------------------------------------------------------------

    def error(self, answer: Answer, where: str, conditional: bool = False) -> Exception:
        """The store error for a failed answer."""
        status = answer.status
        try:
            message = str(answer.json().get("error", {}).get("message", ""))
        except (StoreError, AttributeError):
            message = answer.body[:200].decode("utf-8", "replace")
        place = f"{where} in {self.url}"
        if status == 412:
            return PreconditionFailed(f"conditional write of {place} lost its race")
        if status == 404:
            if "bucket" in message.lower():
                return StoreError(
                    f"bucket gs://{self.bucket} does not exist",
                    hint="create it (gcloud storage buckets create) or fix the store URL",
                )
            if conditional:
                return PreconditionFailed(f"conditional write of {place}: no such object")
            return ObjectNotFound(f"no object {place}")
        if status in (401, 403):
            return StoreError(f"permission denied on {place}: {message}", hint=PERMISSION_HINT)
        return StoreError(
            f"Cloud Storage failed on {place}: {status} {message}",
            hint="retried with backoff; check the bucket and https://status.cloud.google.com",
        )
