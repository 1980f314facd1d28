"""GCSStore: the ObjectStore contract on a Cloud Storage bucket (``gs://bucket/prefix``).

- Generations are GCS object generations; conditions are ``ifGenerationMatch``, which
  GCS applies atomically, so create-only and compare-and-swap hold between machines.
- Every call retries 429/5xx/connection errors with exponential backoff. A
  conditional write is safe to retry; the one ambiguity — a write that succeeded but
  whose answer was lost, then fails its own retry with 412 — is resolved by a random
  write id stored in the object's metadata: a 412 on an object carrying our id is our
  own success.
- Large files stream through resumable uploads in ``chunk_size`` pieces; reads of one
  object are pinned to one generation, so data and generation always belong together.

google-cloud-storage is imported lazily (in ``relaunch.gcp.clients``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from relaunch.errors import ObjectNotFound, PreconditionFailed, StoreError
from relaunch.store.base import Listing, ObjectMeta, check_key

_WRITE_ID = "relaunch-write-id"
_MULTIPART_MAX = 8 << 20  # above this, uploads are resumable (the library's own limit)
_PERMISSION_HINT = (
    "grant the caller roles/storage.objectAdmin on the bucket "
    "(gcloud storage buckets add-iam-policy-binding)"
)


def _ns(when: datetime | None) -> int:
    return int(when.timestamp() * 1e9) if when else 0


class GCSStore:
    """A store under ``gs://bucket/prefix`` (the prefix may be empty)."""

    def __init__(
        self,
        url: str,
        *,
        chunk_size: int = 16 << 20,
        retry_initial: float = 0.5,
        retry_timeout: float = 120.0,
    ) -> None:
        if not url.startswith("gs://") or not url[len("gs://") :].split("/", 1)[0]:
            raise StoreError(f"not a bucket URL: {url!r}", hint="use gs://BUCKET[/PREFIX]")
        bucket, _, prefix = url[len("gs://") :].partition("/")
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self.url = f"gs://{bucket}/{self.prefix}" if self.prefix else f"gs://{bucket}"
        self.chunk_size = max(256 << 10, chunk_size // (256 << 10) * (256 << 10))
        self._retry_initial = retry_initial
        self._retry_timeout = retry_timeout
        # One request waits at most this long (the library's default is 60 s), so a call
        # with its retries stays near retry_timeout.
        self._timeout = max(1.0, min(60.0, retry_timeout / 2))
        self._bucket_obj: Any = None
        self._retry_obj: Any = None

    def __repr__(self) -> str:
        return f"GCSStore({self.url!r})"

    # -- plumbing --------------------------------------------------------------

    @property
    def _bucket(self) -> Any:
        if self._bucket_obj is None:
            from relaunch.gcp.clients import storage_client

            self._bucket_obj = storage_client().bucket(self.bucket_name)
        return self._bucket_obj

    @property
    def _retry(self) -> Any:
        if self._retry_obj is None:
            from google.cloud.storage.retry import DEFAULT_RETRY

            self._retry_obj = DEFAULT_RETRY.with_delay(
                initial=self._retry_initial, maximum=max(self._retry_initial, 16.0)
            ).with_timeout(self._retry_timeout)
        return self._retry_obj

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _key(self, name: str) -> str:
        return name[len(self.prefix) + 1 :] if self.prefix else name

    @contextlib.contextmanager
    def _errors(self, key: str, conditional: bool = False) -> Iterator[None]:
        """Translate google.api_core errors into relaunch's store errors."""
        from google.api_core import exceptions as gexc

        where = f"{key!r} in {self.url}"
        try:
            yield
        except gexc.PreconditionFailed:
            raise PreconditionFailed(f"conditional write of {where} lost its race") from None
        except gexc.NotFound as e:
            if "bucket" in str(e.message).lower():
                raise StoreError(
                    f"bucket gs://{self.bucket_name} does not exist",
                    hint="create it (gcloud storage buckets create) or fix the store URL",
                ) from None
            if conditional:
                raise PreconditionFailed(f"conditional write of {where}: no such object") from None
            raise ObjectNotFound(f"no object {where}") from None
        except (gexc.Forbidden, gexc.Unauthorized) as e:
            raise StoreError(
                f"permission denied on {where}: {e.message}", hint=_PERMISSION_HINT
            ) from None
        except gexc.GoogleAPICallError as e:
            raise StoreError(
                f"Cloud Storage failed on {where}: {e.code} {e.message}",
                hint="retried with backoff; check the bucket and https://status.cloud.google.com",
            ) from None
        except gexc.RetryError as e:
            raise StoreError(
                f"Cloud Storage did not answer for {where}: {e.cause}",
                hint="check the network and the storage endpoint",
            ) from None

    def _own_write(self, name: str, write_id: str) -> int | None:
        """The generation of ``name`` if its current content was written with ``write_id``."""
        blob = self._bucket.get_blob(name, retry=self._retry, timeout=self._timeout)
        if blob is not None and (blob.metadata or {}).get(_WRITE_ID) == write_id:
            return int(blob.generation)
        return None

    def _write(self, key: str, condition: int | None, upload: Any) -> int:
        name = self._name(key)
        write_id = secrets.token_hex(8)
        blob = self._bucket.blob(name)
        blob.metadata = {_WRITE_ID: write_id}
        with self._errors(key, conditional=condition is not None):
            try:
                upload(blob)
            except Exception as e:
                from google.api_core import exceptions as gexc

                if isinstance(e, gexc.PreconditionFailed):
                    own = self._own_write(name, write_id)
                    if own is not None:
                        return own
                raise
        return int(blob.generation)

    # -- the contract ----------------------------------------------------------

    def get(self, key: str) -> tuple[bytes, int]:
        blob = self._bucket.blob(self._name(key))
        with self._errors(key):
            data = blob.download_as_bytes(retry=self._retry, timeout=self._timeout)
        return data, int(blob.generation)

    def stat(self, key: str) -> ObjectMeta | None:
        with self._errors(key):
            blob = self._bucket.get_blob(self._name(key), retry=self._retry, timeout=self._timeout)
        if blob is None:
            return None
        return ObjectMeta(key, int(blob.generation), int(blob.size or 0), _ns(blob.updated))

    def put(self, key: str, data: bytes, *, if_generation_match: int | None = None) -> int:
        def upload(blob: Any) -> None:
            if len(data) > _MULTIPART_MAX:
                blob.chunk_size = self.chunk_size
            blob.upload_from_string(
                data,
                content_type="application/octet-stream",
                if_generation_match=if_generation_match,
                retry=self._retry,
                timeout=self._timeout,
            )

        return self._write(key, if_generation_match, upload)

    def upload_file(self, key: str, path: Path, *, if_generation_match: int | None = None) -> int:
        size = os.path.getsize(path)

        def upload(blob: Any) -> None:
            if size > _MULTIPART_MAX:
                blob.chunk_size = self.chunk_size
            blob.upload_from_filename(
                str(path),
                content_type="application/octet-stream",
                if_generation_match=if_generation_match,
                retry=self._retry,
                timeout=self._timeout,
            )

        return self._write(key, if_generation_match, upload)

    def delete(self, key: str, *, if_generation_match: int | None = None) -> None:
        blob = self._bucket.blob(self._name(key))
        try:
            with self._errors(key, conditional=if_generation_match is not None):
                blob.delete(
                    if_generation_match=if_generation_match,
                    retry=self._retry,
                    timeout=self._timeout,
                )
        except ObjectNotFound:
            pass  # absent and unconditional: not an error (the contract)

    def list(self, prefix: str, *, delimiter: str | None = None) -> Listing:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        objects: list[ObjectMeta] = []
        with self._errors(prefix or "/"):
            pages = self._bucket.client.list_blobs(
                self._bucket,
                prefix=full,
                delimiter=delimiter,
                retry=self._retry,
                timeout=self._timeout,
            )
            for blob in pages:
                objects.append(
                    ObjectMeta(
                        self._key(blob.name),
                        int(blob.generation),
                        int(blob.size or 0),
                        _ns(blob.updated),
                    )
                )
            prefixes = sorted(self._key(p) for p in pages.prefixes)
        objects.sort(key=lambda m: m.key)
        return Listing(objects, prefixes)

    def _pinned(self, key: str) -> Any:
        """A blob handle on the object's current generation (ObjectNotFound if absent)."""
        meta = self.stat(key)
        if meta is None:
            raise ObjectNotFound(f"no object {key!r} in {self.url}")
        return self._bucket.blob(self._name(key), generation=meta.generation)

    def download_file(self, key: str, path: Path) -> int:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        blob = self._pinned(key)
        try:
            with self._errors(key), open(tmp, "wb") as out:
                blob.download_to_file(out, retry=self._retry)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return int(blob.generation)

    def open_read(self, key: str) -> IO[bytes]:
        """A reader pinned to the current generation: if the object is replaced while
        it is read, reading raises google's NotFound instead of mixing two versions."""
        blob = self._pinned(key)
        with self._errors(key):
            reader: IO[bytes] = blob.open("rb", chunk_size=self.chunk_size, retry=self._retry)
        return reader
