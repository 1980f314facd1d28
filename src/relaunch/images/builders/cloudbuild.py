"""Cloud Build: upload the deterministic context tarball to the staging bucket,
``builds.create``, stream the build log from the logs bucket, poll ``builds.get`` to a
terminal status. Cloud Build always pushes (its result lives only in the registry).

This is the seeds' "staged tarball + Cloud Build submit" path; relaunch archives the
source itself, so gcloud's "unexpected end of data" archiving crash cannot happen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from relaunch.errors import BackendError, SpecError
from relaunch.images.builders.base import BuildRequest, BuildResult, LogFile
from relaunch.images.gcp import classify, cloudbuild_client, storage_client
from relaunch.spec.project import ProjectConfig

SOURCES = "relaunch/sources"
LOGS = "relaunch/build-logs"
_OBJECT_VIEWER_HINT = (
    "grant roles/storage.objectViewer on gs://{bucket} to the Cloud Build identity "
    "(and roles/logging.logWriter for its logs)"
)


def cloudbuild_configured(config: ProjectConfig) -> bool:
    """Whether relaunch.toml names what Cloud Build needs ([gcp] project and staging_bucket)."""
    return bool(config.gcp.project and config.gcp.staging_bucket)


def _bucket_name(value: str) -> str:
    return value.removeprefix("gs://").split("/", 1)[0]


class CloudBuildBuilder:
    name = "cloudbuild"

    def __init__(
        self,
        config: ProjectConfig,
        *,
        poll_interval: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        retry_deadline: float = 120.0,
    ) -> None:
        self.config = config
        self.poll_interval = poll_interval
        self.sleep = sleep
        self.retry_deadline = retry_deadline  # upload retries on 429/5xx; 0: no retry

    def configured(self) -> bool:
        return cloudbuild_configured(self.config)

    def _require(self) -> tuple[str, str]:
        gcp = self.config.gcp
        if not gcp.project or not gcp.staging_bucket:
            raise SpecError(
                "Cloud Build needs [gcp] project and staging_bucket in relaunch.toml",
                hint="set them, or build with --builder docker",
            )
        return gcp.project, _bucket_name(gcp.staging_bucket)

    def build_body(self, req: BuildRequest, bucket: str, source_object: str) -> Any:
        """The ``Build`` resource for ``builds.create``."""
        from google.cloud.devtools import cloudbuild_v1 as cb
        from google.protobuf import duration_pb2

        image, fp = req.item.image, req.item.fingerprint
        args = ["build", "--file", image.dockerfile_in_context(), "--tag", fp.uri]
        args += ["--platform", image.platform]
        for k, v in sorted(req.build_args.items()):
            args += ["--build-arg", f"{k}={v}"]
        secret_env, available = self._secrets(req)
        for sid in secret_env:
            args += ["--secret", f"id={sid},env={sid}"]
        args += ["--label", f"dev.relaunch.tag={fp.tag}", "."]
        options = cb.BuildOptions()
        if image.machine_type:
            names = [m for m in cb.BuildOptions.MachineType.__members__ if m != "UNSPECIFIED"]
            if image.machine_type not in names:
                raise SpecError(
                    f"{image.source}: machine_type '{image.machine_type}' is not a Cloud Build "
                    "machine",
                    hint=f"use one of {', '.join(names)}",
                )
            options.machine_type = getattr(cb.BuildOptions.MachineType, image.machine_type)
        return cb.Build(
            source=cb.Source(storage_source=cb.StorageSource(bucket=bucket, object_=source_object)),
            steps=[
                cb.BuildStep(
                    name="gcr.io/cloud-builders/docker",
                    args=args,
                    env=["DOCKER_BUILDKIT=1"],
                    secret_env=secret_env,
                )
            ],
            available_secrets=available,
            images=[fp.uri],
            timeout=duration_pb2.Duration(seconds=int(image.timeout)),
            logs_bucket=f"gs://{bucket}/{LOGS}",
            options=options,
            tags=["relaunch", image.name],
        )

    def _secrets(self, req: BuildRequest) -> tuple[list[str], Any]:
        """The step's ``secretEnv`` and the build's ``availableSecrets``: Cloud Build reads
        each Secret Manager version itself, so no value is in the request."""
        from google.cloud.devtools import cloudbuild_v1 as cb

        image = req.item.image
        refs = sorted(image.secrets.items())
        for sid, ref in refs:
            if ref.startswith("env:"):
                raise SpecError(
                    f"{image.source}: build secret '{sid}' is {ref}, a variable Cloud Build "
                    "cannot see (sending it would put it in the request)",
                    hint="store it in Secret Manager and give projects/P/secrets/S, or build "
                    "with --builder docker",
                )
        managed = [
            cb.SecretManagerSecret(
                version_name=ref if "/versions/" in ref else f"{ref}/versions/latest", env=sid
            )
            for sid, ref in refs
        ]
        return [sid for sid, _ in refs], cb.Secrets(secret_manager=managed) if managed else None

    def _upload(self, req: BuildRequest, bucket: str) -> str:
        from google.api_core import exceptions as gexc
        from google.cloud.storage.retry import DEFAULT_RETRY

        retry = DEFAULT_RETRY.with_deadline(self.retry_deadline) if self.retry_deadline else None
        tarball = req.context_tarball()
        name = f"{SOURCES}/{req.item.name}-{req.item.tag}-{tarball.sha256[:12]}.tar.gz"
        blob = storage_client(self.config).bucket(bucket).blob(name)
        try:
            blob.upload_from_filename(
                str(tarball.path),
                content_type="application/gzip",
                if_generation_match=0,
                retry=retry,
            )
        except gexc.PreconditionFailed:
            pass  # the same bytes are already staged (the name carries their digest)
        except Exception as e:
            raise classify(
                e,
                f"uploading the context to gs://{bucket}",
                permission_hint=f"grant roles/storage.objectAdmin on gs://{bucket} to you",
            ) from None
        return name

    def build(self, req: BuildRequest) -> BuildResult:
        from google.cloud.devtools import cloudbuild_v1 as cb

        project, bucket = self._require()
        self._secrets(req)  # an unusable secret fails before anything is staged
        log = LogFile(req)
        try:
            source = self._upload(req, bucket)
            log.line(f"relaunch: context staged at gs://{bucket}/{source}")
            client = cloudbuild_client(self.config)
            try:
                op = client.create_build(
                    project_id=project, build=self.build_body(req, bucket, source)
                )
                build_id = op.metadata.build.id
            except SpecError:
                raise
            except Exception as e:
                raise classify(
                    e,
                    "creating the Cloud Build build",
                    permission_hint="grant roles/cloudbuild.builds.editor on the project to you",
                ) from None
            log.line(f"relaunch: Cloud Build build {build_id}")
            final = self._follow(client, project, bucket, build_id, log, req)
        finally:
            log.close()
        if final.status != cb.Build.Status.SUCCESS:
            raise _failure(final, req, bucket)
        return BuildResult(self.name, True, req.log_path, {"build_id": build_id})

    def _follow(
        self, client: Any, project: str, bucket: str, build_id: str, log: LogFile, req: BuildRequest
    ) -> Any:
        from google.cloud.devtools import cloudbuild_v1 as cb

        terminal = {
            cb.Build.Status.SUCCESS,
            cb.Build.Status.FAILURE,
            cb.Build.Status.INTERNAL_ERROR,
            cb.Build.Status.TIMEOUT,
            cb.Build.Status.CANCELLED,
            cb.Build.Status.EXPIRED,
        }
        logs = _LogTail(storage_client(self.config), bucket, f"{LOGS}/log-{build_id}.txt")
        deadline = time.monotonic() + req.item.image.timeout + 3600
        errors = 0
        while True:
            try:
                build = client.get_build(project_id=project, id=build_id)
                errors = 0
            except Exception as e:
                err = classify(e, f"polling build {build_id}", permission_hint="")
                errors += 1
                if err.reason != "transient" or errors > 5:
                    raise err from None
                self.sleep(self.poll_interval)
                continue
            for line in logs.new_lines():
                log.line(line)
            if build.status in terminal:
                for line in logs.new_lines(final=True):
                    log.line(line)
                return build
            if time.monotonic() > deadline:
                raise BackendError(
                    f"Cloud Build build {build_id} never finished", reason="transient"
                )
            self.sleep(self.poll_interval)


class _LogTail:
    """Reads the growing log object from where the last read stopped."""

    def __init__(self, client: Any, bucket: str, name: str) -> None:
        self._bucket = client.bucket(bucket)
        self._name = name
        self._offset = 0
        self._partial = b""

    def new_lines(self, *, final: bool = False) -> list[str]:
        try:
            blob = self._bucket.get_blob(self._name)
            if blob is None or (blob.size or 0) <= self._offset:
                data = b""
            else:
                data = blob.download_as_bytes(start=self._offset)
        except Exception:
            return []  # the log is a courtesy; the build's status decides
        self._offset += len(data)
        text = self._partial + data
        *lines, self._partial = text.split(b"\n")
        if final and self._partial:
            lines.append(self._partial)
            self._partial = b""
        return [line.decode("utf-8", "replace") for line in lines]


def _failure(build: Any, req: BuildRequest, bucket: str) -> BackendError:
    """A terminal non-SUCCESS status as one clear error."""
    from google.cloud.devtools import cloudbuild_v1 as cb

    status = cb.Build.Status(build.status)
    detail = (build.failure_info.detail if build.failure_info else "") or build.status_detail
    where = f"Cloud Build build {build.id} of {req.item.name}:{req.item.tag}"
    log_hint = f"see the log {req.log_path}"
    if "storage.objects.get" in detail or ("storage.objects" in detail and "403" in detail):
        return BackendError(
            f"{where} could not read its source: {detail}",
            reason="permission",
            hint=_OBJECT_VIEWER_HINT.format(bucket=bucket),
        )
    if status == cb.Build.Status.FAILURE:
        return BackendError(
            f"{where} failed: {detail or 'a build step failed'}",
            reason="user-error",
            hint=f"{log_hint}; fix the Dockerfile and build again",
        )
    if status == cb.Build.Status.TIMEOUT:
        return BackendError(
            f"{where} timed out after {int(req.item.image.timeout)}s",
            reason="user-error",
            hint="raise the image's timeout (max 24h) or set a bigger machine_type",
        )
    if status == cb.Build.Status.INTERNAL_ERROR:
        return BackendError(
            f"{where} hit a Cloud Build internal error: {detail}",
            reason="transient",
            hint="build again; it is not your Dockerfile",
        )
    if status == cb.Build.Status.CANCELLED:
        return BackendError(
            f"{where} was cancelled", reason="stopped", hint="build again if that was a mistake"
        )
    if status == cb.Build.Status.EXPIRED:
        return BackendError(
            f"{where} expired in the queue before it started",
            reason="transient",
            hint="build again; check the project's concurrent-build quota",
        )
    return BackendError(f"{where} ended as {status.name}", reason="transient", hint=log_hint)
