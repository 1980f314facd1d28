"""Compute v1 instances: insert / get / list / aggregatedList / delete / setLabels /
setMetadata / serial port output, with spot preemption.

An inserted instance goes PROVISIONING → STAGING → RUNNING; its insert operation is
DONE once it runs — or DONE with an error when a stockout / async quota fault hits its
zone or region. A running instance runs "the startup script": the base64 shell
command in metadata ``command_key`` (default ``relaunch-command``), with the JSON
object in base64 metadata ``env_key`` (``relaunch-env``) as extra environment, the
fake's endpoints, and ``GCE_METADATA_HOST`` pointing at its own metadata server.
When the command exits the VM keeps running (as a real one does) unless ``on_exit``
is ``"stop"`` (→ TERMINATED) or ``"delete"``.

:meth:`ComputeService.preempt`: metadata ``instance/preempted`` turns TRUE, a DONE
``compute.instances.preempted`` operation appears, the command gets SIGTERM, then
SIGKILL after ``fake.notice``; the instance ends TERMINATED (spot
``instanceTerminationAction`` STOP, the default) or is deleted (DELETE).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.fakegcp.common import matcher, new_id, now, page
from tests.fakegcp.compute_ops import BASE, LINK, ComputeOps
from tests.fakegcp.cos import CosBehaviour, install_tools, path_with
from tests.fakegcp.executor import Workload, base_env
from tests.fakegcp.metadata import MetadataServer
from tests.fakegcp.schemas import validate
from tests.fakegcp.server import FakeError, Request, Router

if TYPE_CHECKING:
    from tests.fakegcp.fake import FakeGCP

_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_INSTANCES = BASE + r"/zones/(?P<zone>[^/]+)/instances"
_ONE = _INSTANCES + r"/(?P<name>[^/]+)"


@dataclass
class Vm:
    resource: dict[str, Any]
    project: str
    zone: str
    changed: float
    metadata: MetadataServer
    workload: Workload | None = None
    preempt_at: float | None = None
    stopping: str | None = None  # "TERMINATED" or "DELETED" once going down

    def set_status(self, status: str) -> None:
        self.resource["status"] = status
        self.changed = time.monotonic()

    def item(self, key: str) -> str | None:
        for item in (self.resource.get("metadata") or {}).get("items") or []:
            if item.get("key") == key:
                return str(item.get("value"))
        return None


def _gpus(resource: dict[str, Any]) -> float:
    return float(
        sum(int(a.get("acceleratorCount", 0)) for a in resource.get("guestAccelerators") or [])
    )


class ComputeService:
    command_key = "relaunch-command"
    env_key = "relaunch-env"

    def __init__(self, fake: FakeGCP) -> None:
        self.fake = fake
        self.lock = threading.RLock()
        self.vms: dict[tuple[str, str], Vm] = {}  # (zone, name)
        self.ops = ComputeOps(fake)
        self.on_exit = "stay"
        self.cos = CosBehaviour()  # how the COS tools of VMs started from now on behave

    def register(self, router: Router) -> None:
        self.ops.register(router)
        router.add("compute", "POST", _INSTANCES, self.insert)
        router.add("compute", "GET", _INSTANCES, self.list)
        router.add("compute", "GET", BASE + r"/aggregated/instances", self.aggregated)
        router.add("compute", "GET", _ONE, self.get)
        router.add("compute", "DELETE", _ONE, self.delete)
        router.add("compute", "POST", _ONE + r"/setLabels", self.set_labels)
        router.add("compute", "POST", _ONE + r"/setMetadata", self.set_metadata)
        router.add("compute", "GET", _ONE + r"/serialPort", self.serial_port)

    def usage(self, region: str) -> dict[str, float]:
        with self.lock:
            vms = [v for v in self.vms.values() if self.ops.region_of(v.zone) == region]
            spot = [_gpus(v.resource) for v in vms if _is_spot(v.resource)]
            std = [_gpus(v.resource) for v in vms if not _is_spot(v.resource)]
        return {"NVIDIA_T4_GPUS": sum(std), "PREEMPTIBLE_NVIDIA_T4_GPUS": sum(spot)}

    # -- routes ----------------------------------------------------------------

    def insert(self, req: Request, project: str, zone: str) -> dict[str, Any]:
        body = validate("compute.v1", "Instance", req.json())
        region = self.ops.region_of(zone)
        name = body.get("name", "")
        if not _NAME.match(name):
            raise FakeError(
                400, f"Invalid value for field 'resource.name': '{name}'.", reason="invalid"
            )
        if not body.get("machineType"):
            raise FakeError(
                400, "Required field 'resource.machineType' not specified", reason="required"
            )
        quota = self.fake.faults.take_quota(region, sync=True)
        if quota is not None:
            metric = quota.extra["metric"]
            raise FakeError(
                403,
                f"Quota '{metric}' exceeded.  Limit: 0.0 in region {region}.",
                reason="quotaExceeded",
                domain="usageLimits",
            )
        link = f"{LINK}/{project}/zones/{zone}/instances/{name}"
        with self.lock:
            if (zone, name) in self.vms:
                raise FakeError(
                    409,
                    f"The resource '{link[len(LINK) - 8 :]}' already exists",
                    reason="alreadyExists",
                )
            body.update(
                kind="compute#instance",
                id=new_id(),
                zone=f"{LINK}/{project}/zones/{zone}",
                selfLink=link,
                status="PROVISIONING",
                creationTimestamp=now(),
                labelFingerprint=new_id(),
            )
            body.setdefault("metadata", {})["fingerprint"] = new_id()
            vm = Vm(body, project, zone, time.monotonic(), MetadataServer(body, project))
            self.vms[(zone, name)] = vm
            return self.ops.start(project, zone, "insert", link, lambda: self._placed(vm, region))

    def _placed(self, vm: Vm, region: str) -> tuple[int, str, str] | None:
        """The insert operation completes: stockout, async quota, or the VM is up."""
        faults = self.fake.faults
        error: tuple[int, str, str] | None = None
        if faults.take_stockout(vm.zone):
            error = (
                503,
                "ZONE_RESOURCE_POOL_EXHAUSTED",
                f"The zone 'projects/{vm.project}/zones/{vm.zone}' does not have enough "
                "resources available to fulfill the request.  Try a different zone, or try again "
                "later.",
            )
        elif (quota := faults.take_quota(region, sync=False)) is not None:
            error = (
                403,
                "QUOTA_EXCEEDED",
                f"Quota '{quota.extra['metric']}' exceeded.  Limit: 0.0 in region {region}.",
            )
        if error:
            with self.lock:
                self.vms.pop((vm.zone, vm.resource["name"]), None)
        return error

    def _vm(self, zone: str, name: str) -> Vm:
        vm = self.vms.get((zone, name))
        if vm is None:
            raise FakeError(
                404,
                f"The resource 'projects/{self.fake.project}/zones/{zone}/instances/{name}' "
                "was not found",
                reason="notFound",
            )
        return vm

    def get(self, req: Request, project: str, zone: str, name: str) -> dict[str, Any]:
        with self.lock:
            return json.loads(json.dumps(self._vm(zone, name).resource))

    def list(self, req: Request, project: str, zone: str) -> dict[str, Any]:
        keep = matcher(req.query.get("filter", ""))
        with self.lock:
            items = [dict(v.resource) for (z, _), v in sorted(self.vms.items()) if z == zone]
        return {
            "kind": "compute#instanceList",
            **page(req, [i for i in items if keep(i)], "items", 500),
        }

    def aggregated(self, req: Request, project: str) -> dict[str, Any]:
        keep = matcher(req.query.get("filter", ""))
        scopes: dict[str, Any] = {}
        with self.lock:
            for (zone, _), vm in sorted(self.vms.items()):
                if keep(vm.resource):
                    scopes.setdefault(f"zones/{zone}", {"instances": []})["instances"].append(
                        dict(vm.resource)
                    )
        return {"kind": "compute#instanceAggregatedList", "items": scopes}

    def delete(self, req: Request, project: str, zone: str, name: str) -> dict[str, Any]:
        with self.lock:
            vm = self._vm(zone, name)
            link = vm.resource["selfLink"]
            if vm.resource["status"] in ("TERMINATED", "STOPPED"):
                del self.vms[(zone, name)]  # nothing runs: the VM (and its disk) just goes
            else:
                vm.stopping = None if vm.stopping == "TERMINATED" else vm.stopping
                self._shut_down(vm, "DELETED")
        return self.ops.start(project, zone, "delete", link)

    def set_labels(self, req: Request, project: str, zone: str, name: str) -> dict[str, Any]:
        body = validate("compute.v1", "InstancesSetLabelsRequest", req.json())
        with self.lock:
            vm = self._vm(zone, name)
            if body.get("labelFingerprint") != vm.resource["labelFingerprint"]:
                raise FakeError(
                    412,
                    "Labels fingerprint either invalid or resource labels have changed",
                    reason="conditionNotMet",
                )
            vm.resource["labels"] = dict(body.get("labels") or {})
            vm.resource["labelFingerprint"] = new_id()
        return self.ops.start(project, zone, "setLabels", vm.resource["selfLink"], done=True)

    def set_metadata(self, req: Request, project: str, zone: str, name: str) -> dict[str, Any]:
        body = validate("compute.v1", "Metadata", req.json())
        with self.lock:
            vm = self._vm(zone, name)
            if body.get("fingerprint") != vm.resource["metadata"].get("fingerprint"):
                raise FakeError(
                    412,
                    "Supplied fingerprint does not match current metadata fingerprint.",
                    reason="conditionNotMet",
                )
            vm.resource["metadata"] = {"items": body.get("items") or [], "fingerprint": new_id()}
        return self.ops.start(project, zone, "setMetadata", vm.resource["selfLink"], done=True)

    def serial_port(self, req: Request, project: str, zone: str, name: str) -> dict[str, Any]:
        with self.lock:
            vm = self._vm(zone, name)
        text = f"fake-gce: booting {name}\n"
        if vm.workload is not None:
            text += vm.workload.output()
        data = text.encode()
        start = min(int(req.query.get("start") or 0), len(data))
        return {
            "kind": "compute#serialPortOutput",
            "contents": data[start:].decode(errors="replace"),
            "start": str(start),
            "next": str(len(data)),
        }

    # -- scripting and the clock -------------------------------------------------

    def preempt(self, name: str, *, zone: str | None = None, after: float = 0.0) -> None:
        """Reclaim the spot VM ``name`` ``after`` seconds from now."""
        with self.lock:
            vm = next(v for (z, n), v in self.vms.items() if n == name and zone in (None, z))
            vm.preempt_at = time.monotonic() + after

    def vm(self, name: str) -> Vm:
        with self.lock:
            return next(v for (_, n), v in self.vms.items() if n == name)

    def _shut_down(self, vm: Vm, end: str) -> None:
        if vm.stopping is None:
            vm.stopping = end
            vm.set_status("STOPPING")
            if vm.workload is not None:
                vm.workload.terminate(self.fake.notice)

    def tick(self) -> None:
        with self.lock:
            for key, vm in list(self.vms.items()):
                self._advance(key, vm)

    def _advance(self, key: tuple[str, str], vm: Vm) -> None:
        status, due = vm.resource["status"], time.monotonic() - vm.changed >= self.fake.step
        if status == "PROVISIONING" and due:
            vm.set_status("STAGING")
        elif status == "STAGING" and due:
            vm.set_status("RUNNING")
            vm.resource["lastStartTimestamp"] = now()
            self._start(vm)
        elif status == "RUNNING":
            if vm.preempt_at is not None and time.monotonic() >= vm.preempt_at:
                vm.preempt_at = None
                self._preempted(vm)
            elif self._powered_off(vm):
                self.ops.start(
                    vm.project,
                    vm.zone,
                    "compute.instances.guestTerminate",
                    vm.resource["selfLink"],
                    done=True,
                    message="Instance terminated by guest OS shutdown.",
                )
                self._shut_down(vm, "TERMINATED")
            elif (
                vm.workload is not None
                and vm.workload.exit_code is not None
                and self.on_exit != "stay"
            ):
                self._shut_down(vm, "TERMINATED" if self.on_exit == "stop" else "DELETED")
        elif status == "STOPPING" and (vm.workload is None or not vm.workload.group_alive()):
            vm.metadata.stop()
            if vm.stopping == "DELETED":
                del self.vms[key]
            else:
                vm.set_status("TERMINATED")
                vm.resource["lastStopTimestamp"] = now()

    def _preempted(self, vm: Vm) -> None:
        vm.metadata.preempt()
        self.ops.start(
            vm.project,
            vm.zone,
            "compute.instances.preempted",
            vm.resource["selfLink"],
            done=True,
            message="Instance was preempted.",
        )
        action = (vm.resource.get("scheduling") or {}).get("instanceTerminationAction", "STOP")
        self._shut_down(vm, "DELETED" if action == "DELETE" else "TERMINATED")

    def _start(self, vm: Vm) -> None:
        vm.metadata.start()
        if vm.item("startup-script") is not None and self.fake.execute:
            self._run_startup_script(vm)
            return
        command = vm.item(self.command_key)
        if command is None or not self.fake.execute:
            return
        env = {**base_env(), **self.fake.env(), "GCE_METADATA_HOST": vm.metadata.host}
        extra = vm.item(self.env_key)
        if extra:
            env.update({k: str(v) for k, v in json.loads(base64.b64decode(extra)).items()})
        script = base64.b64decode(command).decode()
        vm.workload = self.fake.executor.start(vm.resource["name"], ["/bin/sh", "-c", script], env)

    def state_dir(self, name: str) -> Path:
        """Where the COS stand-ins of VM ``name`` record what they were asked."""
        return self.fake.root / "vms" / name

    def _run_startup_script(self, vm: Vm) -> None:
        """Run the VM's real start-up script with the COS stand-ins on its PATH."""
        name = vm.resource["name"]
        state = self.state_dir(name)
        state.mkdir(parents=True, exist_ok=True)
        script = state / "startup-script"
        script.write_text(vm.item("startup-script") or "")
        image = vm.item("relaunch-image") or ""
        denied = bool(image) and self.fake.faults.take_image_pull(image)
        env = {
            **base_env(),
            **self.cos.env(vm.zone, int(_gpus(vm.resource)), denied),
            "GCE_METADATA_HOST": vm.metadata.host,
            "FAKE_COS_STATE": str(state),
        }
        env["PATH"] = path_with(install_tools(self.fake.root / "cos-bin"), env["PATH"])
        vm.workload = self.fake.executor.start(name, ["/bin/bash", str(script)], env)

    def _powered_off(self, vm: Vm) -> bool:
        return (self.state_dir(vm.resource["name"]) / "poweroff").exists()

    def stop_all(self) -> None:
        with self.lock:
            for vm in self.vms.values():
                vm.metadata.stop()


def _is_spot(resource: dict[str, Any]) -> bool:
    scheduling = resource.get("scheduling") or {}
    return scheduling.get("provisioningModel") == "SPOT" or bool(scheduling.get("preemptible"))
