"""The GCE backend: each attempt is one VM on Container-Optimized OS.

VMs carry the labels ``relaunch-run-id`` and ``relaunch-attempt`` and a name fixed by
the attempt (``<run_id>-<n>``), so an agent that died between inserting a VM and
recording it is replaced by one that finds the VM by label, and a retried insert
answers 409 instead of making a second VM. Before inserting, VMs of the run's other
attempts that outlived them (an agent died mid-delete) are deleted.

Places are zones, grouped by region. A stockout (``ZONE_RESOURCE_POOL_EXHAUSTED``,
seen when the insert operation is polled) blocks the zone; quota (a synchronous 403
``quotaExceeded`` or the operation's ``QUOTA_EXCEEDED``) blocks every zone of the
region, so the run moves to the next region.

The client is google-cloud-compute's ``InstancesClient`` over REST, imported only when
a GCE run is reconciled.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from relaunch.backends.base import AttemptStatus, Backend, Handle, Placement, SubmitContext
from relaunch.backends.contract import require_bucket_and_project
from relaunch.backends.gce.body import ATTEMPT_LABEL, RUN_LABEL, InstanceBuilder, vm_name
from relaunch.errors import BackendError, UserInputError
from relaunch.gcp.errors import backend_error
from relaunch.runs.records import AttemptRecord, RunRecord
from relaunch.spec.gce import region_of
from relaunch.spec.templates import KNOWN_MACROS
from relaunch.states import Reason
from relaunch.store.base import ObjectStore

#: seconds between two reads of one VM (~360 API calls per VM-hour), unless
#: RELAUNCH_GCE_POLL_INTERVAL says otherwise
POLL_INTERVAL = 10.0
CREATE_RETRY_DELAYS = (1.0, 2.0, 4.0)


class GceBackend(Backend):
    name = "gce"
    poll_interval = POLL_INTERVAL
    thread_safe = True  # its clients are thread-safe

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str], Any] = {}
        self._zones: dict[tuple[str, str], list[str]] = {}
        self.poll_interval = float(os.environ.get("RELAUNCH_GCE_POLL_INTERVAL") or POLL_INTERVAL)

    def _client(self, kind: str, endpoint: str | None = None) -> Any:
        key = (kind, endpoint or "")
        if key not in self._clients:
            from relaunch.gcp import clients

            endpoints = {"compute": endpoint} if endpoint else None
            factory = {
                "instances": clients.compute_instances_client,
                "operations": clients.compute_zone_operations_client,
            }[kind]
            self._clients[key] = factory(endpoints)
        return self._clients[key]

    def zones(self, run: RunRecord) -> list[str]:
        """Where the run may go, in order: resources.zones, else every zone of
        resources.regions (or [gcp] region), as Compute lists them."""
        r = run.spec.resources
        if r.zones:
            return list(r.zones)
        regions = list(r.regions) or ([str(run.gcp["region"])] if run.gcp.get("region") else [])
        project = str(run.gcp.get("project") or "")
        endpoint = (run.gcp.get("endpoints") or {}).get("compute")
        return [zone for region in regions for zone in self.region_zones(project, region, endpoint)]

    def region_zones(self, project: str, region: str, endpoint: str | None) -> list[str]:
        """The zones of ``region`` (asked once per process)."""
        key = (project, region)
        if key not in self._zones:
            from relaunch.gcp.clients import compute_regions_client

            try:
                found = compute_regions_client({"compute": endpoint} if endpoint else None).get(
                    project=project, region=region
                )
            except Exception as e:
                raise backend_error(e, f"listing the zones of {region}") from None
            self._zones[key] = sorted(z.rsplit("/", 1)[-1] for z in found.zones)
        return self._zones[key]

    def instances(self, endpoint: str | None = None) -> Any:
        return self._client("instances", endpoint)

    def operations(self, endpoint: str | None = None) -> Any:
        return self._client("operations", endpoint)

    # -- before anything runs -------------------------------------------------------

    def check(self, run: RunRecord, store: ObjectStore) -> None:
        where = f"run {run.run_id} (backend gce)"
        require_bucket_and_project(
            run,
            store.url,
            who="a VM",
            project_hint="set [gcp] project in relaunch.toml or GOOGLE_CLOUD_PROJECT",
        )
        places = self.zones(run)
        if not places:
            raise UserInputError(
                f"{where}: no zone",
                hint="set resources.zones, resources.regions or [gcp] region in relaunch.toml",
            )
        macros = dict.fromkeys(KNOWN_MACROS, "x")
        ctx = SubmitContext(store=store, command=run.spec.argv, macros=macros)
        ctx.image_uri = run.image_uri or run.spec.image
        self.body(run, 1, places[0], ctx)  # a value Compute would refuse fails here

    def offers(self, run: RunRecord) -> list[Placement]:
        return [{"zone": z, "region": region_of(z)} for z in self.zones(run)] or [{}]

    def place_key(self, run: RunRecord, placement: Placement) -> str:
        r = run.spec.resources
        zone = placement.get("zone")
        kind = f"{r.machine_type}/{r.accelerator_type or '-'}"
        return f"gce/{zone}/{kind}" if zone else ""

    def refused_places(self, run: RunRecord, placement: Placement, reason: Reason) -> list[str]:
        """Quota is a region's: every zone of the region is refused with it."""
        if reason is not Reason.QUOTA or not placement.get("zone"):
            return super().refused_places(run, placement, reason)
        region = region_of(str(placement["zone"]))
        return [
            self.place_key(run, offer)
            for offer in self.offers(run)
            if offer.get("region") == region
        ]

    def body(self, run: RunRecord, n: int, zone: str, ctx: SubmitContext) -> Any:
        """The ``compute_v1.Instance`` of attempt ``n`` in ``zone``."""
        from google.cloud import compute_v1

        return compute_v1.Instance(InstanceBuilder(run, n, zone, ctx).build())

    # -- the contract -----------------------------------------------------------------

    def submit(self, run: RunRecord, attempt: AttemptRecord, ctx: SubmitContext) -> Handle:
        zone = str(ctx.placement.get("zone") or "")
        project = str(run.gcp.get("project") or "")
        if not zone or not project:
            raise BackendError(
                f"no Google Cloud {'zone' if project else 'project'} for run {run.run_id}",
                reason=Reason.USER_ERROR.value,
                hint="set [gcp] project in relaunch.toml, and resources.zones or regions",
            )
        endpoint = (run.gcp.get("endpoints") or {}).get("compute")
        instance = self.body(run, attempt.n, zone, ctx)
        self.delete_strays(run, attempt.n, project, endpoint)
        client = self.instances(endpoint)
        placed = attempt.model_copy(update={"placement": ctx.placement})
        for delay in (*CREATE_RETRY_DELAYS, None):
            try:
                op = client.insert(project=project, zone=zone, instance_resource=instance)
                return self._handle(project, zone, instance.name, op.name, endpoint)
            except Exception as e:  # google.api_core errors and transport failures alike
                if getattr(e, "code", None) == 409:  # it exists: an earlier try landed
                    found = self.find(run, placed)
                    if found is not None:
                        return found
                err = backend_error(e, f"creating the VM {instance.name} in {zone}")
                if err.reason != Reason.TRANSIENT.value or delay is None:
                    raise err from None
            # The insert may have landed and only its answer been lost: look first.
            time.sleep(delay)
            found = self.find(run, placed)
            if found is not None:
                return found
        raise AssertionError("unreachable")

    @staticmethod
    def _handle(
        project: str, zone: str, name: str, operation: str | None, endpoint: str | None
    ) -> Handle:
        handle: Handle = {"project": project, "zone": zone, "name": name, "where": zone}
        if operation:
            handle["operation"] = operation
        if endpoint:
            handle["endpoint"] = endpoint
        return handle

    def poll(self, handle: Handle) -> AttemptStatus:
        from google.api_core import exceptions as gexc

        from relaunch.backends.gce import states

        project, zone, name = handle["project"], handle["zone"], handle["name"]
        try:
            vm = self.instances(handle.get("endpoint")).get(
                project=project, zone=zone, instance=name
            )
        except gexc.NotFound:
            vm = None
        except Exception as e:
            err = backend_error(e, f"reading the VM {name}")
            raise BackendError(err.message, reason=Reason.TRANSIENT.value, hint=err.hint) from e
        if vm is not None:
            status = states.status_of_instance(vm.status)
            if status is not None:
                return status
        try:
            if vm is None and handle.get("operation"):
                op = self.operations(handle.get("endpoint")).get(
                    project=project, zone=zone, operation=handle["operation"]
                )
                failed = states.insert_failure(op)
                if failed is not None:
                    return failed
            ended = states.ended_status(self.vm_operations(handle), vm_exists=vm is not None)
        except Exception as e:
            err = backend_error(e, f"reading the operations of VM {name}")
            raise BackendError(err.message, reason=Reason.TRANSIENT.value, hint=err.hint) from e
        if vm is not None:
            self.cancel(handle, 0)  # a stopped VM still holds its disk: delete it
        return ended

    def vm_operations(self, handle: Handle) -> list[Any]:
        """The zone operations whose target is the attempt's VM, oldest first."""
        link = (
            "https://www.googleapis.com/compute/v1/projects/"
            f"{handle['project']}/zones/{handle['zone']}/instances/{handle['name']}"
        )
        ops = self.operations(handle.get("endpoint")).list(
            request={
                "project": handle["project"],
                "zone": handle["zone"],
                "filter": f'targetLink="{link}"',
            }
        )
        return list(ops)

    def cancel(self, handle: Handle, grace: float) -> None:
        # Deleting a VM shuts its guest down: docker gives the container SIGTERM and
        # its --stop-timeout before SIGKILL. Deleting again is harmless.
        from google.api_core import exceptions as gexc

        try:
            self.instances(handle.get("endpoint")).delete(
                project=handle["project"], zone=handle["zone"], instance=handle["name"]
            )
        except gexc.NotFound:
            pass
        except Exception as e:
            raise backend_error(e, f"deleting the VM {handle['name']}") from None

    def find(self, run: RunRecord, attempt: AttemptRecord) -> Handle | None:
        zone = attempt.placement.get("zone")
        project = run.gcp.get("project")
        if not zone or not project:
            return None
        endpoint = (run.gcp.get("endpoints") or {}).get("compute")
        flt = f'labels.{RUN_LABEL}="{run.run_id}" AND labels.{ATTEMPT_LABEL}="{attempt.n}"'
        try:
            found = next(
                iter(
                    self.instances(endpoint).list(
                        request={"project": project, "zone": zone, "filter": flt}
                    )
                ),
                None,
            )
        except Exception as e:
            raise backend_error(e, "looking for the attempt's VM") from None
        if found is None:
            return None
        return self._handle(str(project), str(zone), found.name, None, endpoint)

    def run_vms(self, project: str, run_id: str, endpoint: str | None = None) -> list[Any]:
        """Every VM labelled with ``run_id``, in any zone."""
        flt = f'labels.{RUN_LABEL}="{run_id}"'
        pages = self.instances(endpoint).aggregated_list(
            request={"project": project, "filter": flt}
        )
        return [vm for _, scoped in pages for vm in scoped.instances]

    def delete_strays(self, run: RunRecord, n: int, project: str, endpoint: str | None) -> None:
        """Delete the VMs of the run's other attempts (a VM that outlived its attempt)."""
        try:
            strays = [
                vm
                for vm in self.run_vms(project, run.run_id, endpoint)
                if vm.labels.get(ATTEMPT_LABEL) != str(n) and vm.name != vm_name(run.run_id, n)
            ]
        except Exception as e:
            raise backend_error(e, "looking for the run's earlier VMs") from None
        for vm in strays:
            zone = vm.zone.rsplit("/", 1)[-1]
            self.cancel(self._handle(project, zone, vm.name, None, endpoint), 0)

    def logs(self, handle: Handle) -> Iterator[str]:
        """The VM's serial console (start-up script and container output)."""
        text, _ = self.serial(handle)
        yield from text.splitlines()

    def serial(self, handle: Handle, start: int = 0) -> tuple[str, int]:
        """Serial port 1 from byte ``start``: (text, where the next read starts)."""
        from google.api_core import exceptions as gexc

        try:
            out = self.instances(handle.get("endpoint")).get_serial_port_output(
                request={
                    "project": handle["project"],
                    "zone": handle["zone"],
                    "instance": handle["name"],
                    "start": start,
                }
            )
        except gexc.NotFound:
            return "", start
        except Exception as e:
            raise backend_error(e, f"reading the serial console of {handle['name']}") from None
        return str(out.contents), int(out.next_ or start)
