"""Does a tag exist in the registry? Docker Registry HTTP API v2 (what Artifact Registry
speaks): ``HEAD /v2/<path>/manifests/<tag>``, with the registry's Bearer-token challenge
answered by a Google access token (``oauth2accesstoken``). Standard library HTTP only;
google-auth is imported when a token is first needed.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

from relaunch.errors import BackendError, UserInputError

_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


def split_uri(uri: str) -> tuple[str, str, str]:
    """``host/path/name:tag`` → (host, path/name, tag)."""
    ref, _, tag = uri.rpartition(":")
    if not ref or "/" in tag or "/" not in ref:
        raise UserInputError(
            f"'{uri}' is not a registry image reference",
            hint="set [image_stack] repository, e.g. us-central1-docker.pkg.dev/PROJECT/REPO",
        )
    host, _, path = ref.partition("/")
    return host, path, tag


def is_loopback(host: str) -> bool:
    """``localhost``, ``127.x.x.x`` or ``[::1]``, with or without a port."""
    import ipaddress

    if host.startswith("["):
        name = host[1:].split("]", 1)[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def google_access_token() -> str:
    """An OAuth access token from Application Default Credentials (never logged)."""
    import google.auth
    import google.auth.exceptions
    import google.auth.transport.requests

    try:
        creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        creds.refresh(google.auth.transport.requests.Request())
    except google.auth.exceptions.GoogleAuthError as e:
        raise BackendError(
            f"no Google credentials to read the registry: {e}",
            reason="permission",
            hint="run `gcloud auth application-default login`",
        ) from None
    return str(creds.token)


class _Unreachable(BackendError):
    """No answer at all from ``base`` (refused, timed out, no route, TLS failed)."""

    def __init__(self, base: str, why: str) -> None:
        super().__init__(
            f"cannot reach the registry at {base}: {why}",
            reason="transient",
            hint="check the network, or plan with --offline",
        )
        self.why = why


class Registry:
    """Checks tags. ``endpoint`` replaces ``https://<host>`` (a private endpoint or a
    local fake); ``token`` supplies the Google access token for the auth challenge
    (None: answer challenges without credentials).

    A registry token is scoped to one image path (``repository:<path>:pull``), so tokens
    are kept per (host, path). A refusal is remembered for the folder of the path (an
    Artifact Registry repository, where IAM applies), an unreachable host for the host."""

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        token: Callable[[], str] | None = google_access_token,
        timeout: float = 15.0,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self._token = token
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._bearer: dict[tuple[str, str], str] = {}  # (host, repository) → registry token
        # why a host (folder "") or one repository folder of it cannot be asked
        self._broken: dict[tuple[str, str], BackendError] = {}
        self._scheme: dict[str, str] = {}  # loopback host → the scheme it answered on
        self._http_silent: dict[str, str] = {}  # loopback host → why plain http got no answer
        self._lock = threading.Lock()

    def exists(self, uri: str) -> bool:
        host, path, tag = split_uri(uri)
        folder = path.rpartition("/")[0]
        for key in ((host, ""), (host, folder)):
            if key in self._broken:  # do not wait for the same timeout once per image
                raise self._broken[key]
        try:
            return self._exists(host, path, tag)
        except BackendError as e:
            if e.reason == "transient":
                self._broken[(host, "")] = e
            elif e.reason == "permission":
                self._broken[(host, folder)] = e
            raise

    def _base(self, host: str) -> str:
        """Where ``host`` answers: the endpoint, else https, else (a loopback registry
        that answered plain http, see :meth:`_loopback_scheme`) http."""
        if self.endpoint:
            return self.endpoint
        return f"{self._scheme.get(host, 'https')}://{host}"

    def _loopback_scheme(
        self, host: str, url_path: str, key: tuple[str, str]
    ) -> tuple[int, dict[str, str]] | None:
        """A loopback registry may speak plain http, as Docker allows (it treats
        127.0.0.0/8 as an insecure registry): the first question goes over http (no TLS
        set-up to pay for), and its answer is returned; a 400 or no answer there means
        https (None: ask again over https)."""
        with self._lock:
            if host in self._scheme:
                return None
            try:
                status, headers = self._head(f"http://{host}{url_path}", key)
            except _Unreachable as e:
                self._http_silent[host] = e.why
                status, headers = 400, {}
            self._scheme[host] = "https" if status == 400 else "http"
            return None if status == 400 else (status, headers)

    def _exists(self, host: str, path: str, tag: str) -> bool:
        url_path = f"/v2/{path}/manifests/{urllib.parse.quote(tag)}"
        key = (host, path)
        first = None
        if self.endpoint is None and host not in self._scheme and is_loopback(host):
            first = self._loopback_scheme(host, url_path, key)
        url = self._base(host) + url_path
        answered = False
        for attempt in range(self.retries + 1):
            try:
                status, headers = first or self._head(url, key)
            except _Unreachable as e:
                if host in self._http_silent:
                    raise self._loopback_unreachable(host, e.why) from None
                raise
            first = None
            if status == 401 and not answered:  # no token yet, or an expired one
                answered = True
                self._bearer[key] = self._answer_challenge(headers.get("WWW-Authenticate", ""))
                status, headers = self._head(url, key)
            if status == 200:
                return True
            if status == 404:
                return False
            if status in (401, 403):
                raise BackendError(
                    f"registry refused to show {host}/{path} (HTTP {status})",
                    reason="permission",
                    hint="grant roles/artifactregistry.reader on that repository to the "
                    "account relaunch runs as (see `gcloud auth list`)",
                )
            if status == 429 or status >= 500:
                if attempt < self.retries:
                    time.sleep(self.backoff * 2**attempt)
                    continue
                raise BackendError(
                    f"registry {host} kept failing (HTTP {status})",
                    reason="transient",
                    hint="retry later; check the Google Cloud status page",
                )
            raise BackendError(
                f"registry {host} answered HTTP {status} for {path}:{tag}", reason="transient"
            )
        raise AssertionError("unreachable")

    def _head(self, url: str, key: tuple[str, str]) -> tuple[int, dict[str, str]]:
        req = urllib.request.Request(url, method="HEAD", headers={"Accept": _ACCEPT})
        if self._bearer.get(key):
            req.add_header("Authorization", f"Bearer {self._bearer[key]}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, dict(resp.headers)
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers)
        except (urllib.error.URLError, OSError) as e:
            raise _Unreachable(url.split("/v2/")[0], str(getattr(e, "reason", e))) from None

    def _loopback_unreachable(self, host: str, https_why: str) -> BackendError:
        """Neither scheme answered: say both were tried, in one line."""
        http_why = self._http_silent[host]
        why = http_why if http_why == https_why else f"http: {http_why}; https: {https_why}"
        return BackendError(
            f"cannot reach the registry at http://{host} or https://{host}: {why}",
            reason="transient",
            hint=f"start the registry, or check that it listens on {host} "
            "(the port in [image_stack] repository); or plan with --offline",
        )

    def _answer_challenge(self, challenge: str) -> str:
        """Docker token auth: trade our Google token for a registry token at ``realm``."""
        scheme, _, params = challenge.partition(" ")
        fields = dict(_CHALLENGE.findall(params))
        if scheme.lower() != "bearer" or "realm" not in fields:
            return ""
        query = urllib.parse.urlencode({k: v for k, v in fields.items() if k != "realm"})
        req = urllib.request.Request(f"{fields['realm']}?{query}")
        if self._token is not None:
            basic = base64.b64encode(f"oauth2accesstoken:{self._token()}".encode()).decode()
            req.add_header("Authorization", f"Basic {basic}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                doc = json.loads(resp.read())
        except urllib.error.HTTPError as e:
            raise BackendError(
                f"registry token request failed (HTTP {e.code})",
                reason="permission",
                hint="run `gcloud auth application-default login` and check IAM on the repository",
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise BackendError(f"registry token request failed: {e}", reason="transient") from None
        return str(doc.get("token") or doc.get("access_token") or "")
