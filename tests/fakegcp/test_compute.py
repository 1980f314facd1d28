"""Compute Engine through the official compute_v1 REST client, against the fake."""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

import pytest
import requests
from google.api_core import exceptions as gexc
from google.cloud import compute_v1 as ce

from relaunch.gcp import clients
from relaunch.gcp.errors import classify_exception, classify_operation_errors
from relaunch.states import Reason
from tests.fakegcp.fake import FakeGCP
from tests.fakegcp.fixtures import wait_until

P, Z = "fake-project", "us-central1-a"

# Inside the VM: a thread waits for the preemption notice on the metadata server; the
# notice and SIGTERM are recorded in the fake bucket; SIGTERM hangs (only SIGKILL ends it).
VM_SCRIPT = """
import os, signal, sys, threading, time, urllib.request
from relaunch.store import open_store
store = open_store("gs://vms/out")
def on_term(*_):
    store.put("sigterm", b"1")
    time.sleep(60)
signal.signal(signal.SIGTERM, on_term)
store.put("started", os.environ["RELAUNCH_RUN_ID"].encode())
print("trainer says hello", flush=True)
url = "http://%s/computeMetadata/v1/instance/preempted?wait_for_change=true&timeout_sec=20"
req = urllib.request.Request(url % os.environ["GCE_METADATA_HOST"])
req.add_header("Metadata-Flavor", "Google")
def watch():
    if urllib.request.urlopen(req, timeout=25).read() == b"TRUE":
        store.put("notice", b"1")
threading.Thread(target=watch, daemon=True).start()
time.sleep(60)
"""


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def spot_instance(name: str, zone: str = Z, command: str | None = None) -> ce.Instance:
    items = [ce.Items(key="relaunch-env", value=b64(json.dumps({"RELAUNCH_RUN_ID": name})))]
    if command:
        items.append(ce.Items(key="relaunch-command", value=b64(command)))
    return ce.Instance(
        name=name,
        machine_type=f"zones/{zone}/machineTypes/n1-standard-4",
        labels={"relaunch-run": name},
        scheduling=ce.Scheduling(
            provisioning_model="SPOT",
            instance_termination_action="STOP",
            max_run_duration=ce.Duration(seconds=3600),
        ),
        guest_accelerators=[
            ce.AcceleratorConfig(
                accelerator_type=f"zones/{zone}/acceleratorTypes/nvidia-tesla-t4",
                accelerator_count=1,
            )
        ],
        disks=[
            ce.AttachedDisk(
                boot=True,
                auto_delete=True,
                initialize_params=ce.AttachedDiskInitializeParams(
                    source_image="projects/cos-cloud/global/images/family/cos-stable",
                    disk_size_gb=50,
                ),
            )
        ],
        network_interfaces=[ce.NetworkInterface(network="global/networks/default")],
        metadata=ce.Metadata(items=items),
    )


@pytest.fixture
def vms(fake_gcp: FakeGCP) -> Any:
    fake_gcp.gcs.create_bucket("vms")
    return clients.compute_instances_client()


def command() -> str:
    return f"exec {sys.executable} -c '{VM_SCRIPT}'"


def test_insert_runs_the_metadata_command(fake_gcp: FakeGCP, vms: Any) -> None:
    op = vms.insert(project=P, zone=Z, instance_resource=spot_instance("run-a", command=command()))
    op.result(timeout=20)  # polled through the injected ZoneOperationsClient
    assert vms.get(project=P, zone=Z, instance="run-a").status == "RUNNING"
    wait_until(lambda: "out/started" in fake_gcp.gcs.buckets["vms"])
    assert fake_gcp.gcs.get_object("vms", "out/started").data == b"run-a"
    serial = wait_until(
        lambda: (
            "hello"
            in (o := vms.get_serial_port_output(project=P, zone=Z, instance="run-a")).contents
            and o
        )
    )
    assert int(serial.next_) > 0
    stored = fake_gcp.compute.vm("run-a").resource["scheduling"]
    assert stored["maxRunDuration"] == {"seconds": "3600"}


def test_preemption_notice_sigterm_and_operation(fake_gcp: FakeGCP, vms: Any) -> None:
    # The handler's upload must fit in the notice even on a loaded machine: it sleeps
    # after writing, so SIGKILL still comes (after the whole notice) and is asserted.
    fake_gcp.notice = 5.0
    vms.insert(
        project=P, zone=Z, instance_resource=spot_instance("run-p", command=command())
    ).result(timeout=20)
    wait_until(lambda: "out/started" in fake_gcp.gcs.buckets["vms"])
    fake_gcp.compute.preempt("run-p")
    wait_until(lambda: vms.get(project=P, zone=Z, instance="run-p").status == "TERMINATED")
    assert fake_gcp.gcs.get_object("vms", "out/notice").data == b"1"
    assert fake_gcp.gcs.get_object("vms", "out/sigterm").data == b"1"
    assert fake_gcp.compute.vm("run-p").workload.exit_code == -9
    ops_client = clients.compute_zone_operations_client()
    request = ce.ListZoneOperationsRequest(
        project=P, zone=Z, filter='operationType="compute.instances.preempted"'
    )
    (event,) = list(ops_client.list(request=request))
    assert (
        event.target_link.endswith("/instances/run-p") and event.status == ce.Operation.Status.DONE
    )


def test_stockout_arrives_when_the_operation_is_polled(fake_gcp: FakeGCP, vms: Any) -> None:
    fake_gcp.faults.stockout(zone=Z, times=1)
    op = vms.insert(project=P, zone=Z, instance_resource=spot_instance("run-s"))
    with pytest.raises(gexc.GoogleAPICallError) as info:
        op.result(timeout=20)
    assert classify_exception(info.value) is Reason.NO_CAPACITY
    errors = [(e.code, e.message) for e in op.error.errors]
    assert errors[0][0] == "ZONE_RESOURCE_POOL_EXHAUSTED"
    assert classify_operation_errors(errors) is Reason.NO_CAPACITY
    with pytest.raises(gexc.NotFound):
        vms.get(project=P, zone=Z, instance="run-s")
    other = "us-central1-b"  # the next zone has capacity
    vms.insert(project=P, zone=other, instance_resource=spot_instance("run-s", other)).result(20)


def test_quota_synchronous_and_in_the_operation(fake_gcp: FakeGCP, vms: Any) -> None:
    fake_gcp.faults.quota("us-central1", sync=True, times=1)
    with pytest.raises(gexc.Forbidden) as info:
        vms.insert(project=P, zone=Z, instance_resource=spot_instance("run-q"))
    assert classify_exception(info.value) is Reason.QUOTA
    fake_gcp.faults.quota("us-central1", sync=False, times=1)
    op = vms.insert(project=P, zone=Z, instance_resource=spot_instance("run-q"))
    with pytest.raises(gexc.GoogleAPICallError) as info:
        op.result(timeout=20)
    assert classify_exception(info.value) is Reason.QUOTA


def test_labels_metadata_list_and_delete(fake_gcp: FakeGCP, vms: Any) -> None:
    fake_gcp.execute = False
    vms.insert(project=P, zone=Z, instance_resource=spot_instance("run-l")).result(timeout=20)
    inst = vms.get(project=P, zone=Z, instance="run-l")
    body = ce.InstancesSetLabelsRequest(
        labels={"relaunch-run": "run-l", "attempt": "2"}, label_fingerprint=inst.label_fingerprint
    )
    vms.set_labels(
        project=P, zone=Z, instance="run-l", instances_set_labels_request_resource=body
    ).result(timeout=20)
    with pytest.raises(gexc.PreconditionFailed):  # stale fingerprint
        vms.set_labels(
            project=P, zone=Z, instance="run-l", instances_set_labels_request_resource=body
        )
    metadata = ce.Metadata(
        fingerprint=inst.metadata.fingerprint, items=[ce.Items(key="stop", value="1")]
    )
    vms.set_metadata(project=P, zone=Z, instance="run-l", metadata_resource=metadata).result(20)
    inst = vms.get(project=P, zone=Z, instance="run-l")
    assert inst.labels["attempt"] == "2" and inst.metadata.items[0].key == "stop"
    request = ce.ListInstancesRequest(project=P, zone=Z, filter="labels.attempt=2")
    listed = list(vms.list(request=request))
    assert [i.name for i in listed] == ["run-l"]
    agg = dict(vms.aggregated_list(request=ce.AggregatedListInstancesRequest(project=P)))
    assert [i.name for i in agg[f"zones/{Z}"].instances] == ["run-l"]
    vms.delete(project=P, zone=Z, instance="run-l").result(timeout=20)
    wait_until(lambda: not fake_gcp.compute.vms)


def test_regions_quotas_and_accelerators(fake_gcp: FakeGCP, vms: Any) -> None:
    fake_gcp.execute = False
    vms.insert(project=P, zone=Z, instance_resource=spot_instance("run-r")).result(timeout=20)
    region = clients.compute_regions_client().get(project=P, region="us-central1")
    quotas = {q.metric: (q.limit, q.usage) for q in region.quotas}
    assert quotas["PREEMPTIBLE_NVIDIA_T4_GPUS"] == (8.0, 1.0)
    accel = clients.compute_accelerator_types_client().aggregated_list(
        request=ce.AggregatedListAcceleratorTypesRequest(project=P)
    )
    zones = {
        scope
        for scope, found in accel
        if any(a.name == "nvidia-l4" for a in found.accelerator_types)
    }
    assert f"zones/{Z}" in zones


def test_operation_wait(fake_gcp: FakeGCP, vms: Any) -> None:
    fake_gcp.execute = False
    op = vms.insert(project=P, zone=Z, instance_resource=spot_instance("run-w"))
    done = clients.compute_zone_operations_client().wait(project=P, zone=Z, operation=op.name)
    assert done.status == ce.Operation.Status.DONE


def raw_insert(fake: FakeGCP, body: dict[str, Any]) -> requests.Response:
    url = f"{fake.url}/compute/v1/projects/{P}/zones/{Z}/instances"
    return requests.post(url, json=body, timeout=10)


def vm_body(**scheduling: Any) -> dict[str, Any]:
    return {"name": "x", "machineType": "n1", "scheduling": scheduling}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (vm_body(maxRunDuration="3600s"), "scheduling.maxRunDuration"),  # an object, not a string
        (vm_body(maxRunDuration={"seconds": "1h"}), "int64"),
        (vm_body(provisioningModel="SPOTTY"), "provisioningModel"),
        ({**vm_body(), "gpus": 1}, 'Unknown name "gpus"'),
        (vm_body(automaticRestart="no"), "TYPE_BOOL"),
    ],
)
def test_schema_rejects_bad_instances(fake_gcp: FakeGCP, body: dict[str, Any], needle: str) -> None:
    resp = raw_insert(fake_gcp, body)
    assert resp.status_code == 400, resp.text
    assert needle in resp.json()["error"]["message"]
    assert not fake_gcp.compute.vms
