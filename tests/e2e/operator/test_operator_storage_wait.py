"""S3 down at pod start, operator side (issue 10, item 7): the sidecar is told which step the
status says was saved (SPOTRUN_EXPECTED_STEP), the operator reads the Pending pod's sidecar
while it waits for the storage, and says so (condition StorageReachable=False naming the cause
and the fix, one Warning Event) until the storage answers again."""

from __future__ import annotations

import pytest
from e2e_support import read_pod, wait_for
from operator_support import (
    ARGS,
    PLURAL,
    events_of,
    get_job,
    rtj_body,
    s3_checkpoint,
    submit,
    trainer,
)

from localcluster import procs
from tests.faultproxy import Proxy

pytestmark = pytest.mark.e2e


def storage_condition(custom, namespace: str, name: str, status: str) -> dict | None:
    for c in get_job(custom, namespace, name).get("status", {}).get("conditions") or []:
        if c["type"] == "StorageReachable" and c["status"] == status:
            return c
    return None


def test_a_pod_waiting_for_unreachable_storage_is_said_until_the_storage_answers(
    cluster, namespace, operator, process_node, s3, s3_bucket
):
    gate, sidecar_port = procs.free_ports(2)
    endpoint = f"http://127.0.0.1:{gate}"  # nothing listens there yet: connection refused
    body = rtj_body(
        "waits",
        trainer(["python", "-c", "import time; time.sleep(600)"]),
        s3_checkpoint(s3_bucket, "waits", endpoint, sidecar_port),
        suspend=True,
        terminationGracePeriodSeconds=5,
    )
    core, custom = submit(cluster, namespace, s3, body)
    wait_for(
        lambda: get_job(custom, namespace, "waits").get("status", {}).get("phase") == "Suspended",
        "the job to be Suspended",
    )
    # As if attempt 1 had saved step 40 before it was preempted.
    custom.patch_namespaced_custom_object_status(
        *ARGS, namespace, PLURAL, "waits", {"status": {"lastCheckpoint": {"step": 40}}}
    )
    custom.patch_namespaced_custom_object(
        *ARGS, namespace, PLURAL, "waits", {"spec": {"suspend": False}}
    )
    pod = wait_for(lambda: read_pod(core, namespace, "waits-1"), "waits-1 to be created")
    sidecar = pod.spec.init_containers[0]
    assert {e.name: e.value for e in sidecar.env}["SPOTRUN_EXPECTED_STEP"] == "40"

    down = wait_for(
        lambda: storage_condition(custom, namespace, "waits", "False"),
        "condition StorageReachable=False",
        timeout=120,
    )
    assert down["reason"] == "StorageUnreachable"
    message = down["message"]
    assert f"waits-1 cannot read the checkpoints in s3://{s3_bucket}/waits at {endpoint}" in (
        message
    )
    assert "since step 40 was saved" in message and "SPOTRUN_START_WITHOUT_STORAGE=1" in message
    # the trainer starts beside its sidecar and waits in restore() for .spotrun-ready: its pod
    # runs (an S3 sidecar has no startupProbe), yet nothing ends while the storage is down
    assert read_pod(core, namespace, "waits-1").status.phase in ("Pending", "Running")

    proxy = Proxy(s3.endpoint_url, port=gate)  # the storage answers from now on
    try:
        up = wait_for(
            lambda: storage_condition(custom, namespace, "waits", "True"),
            "condition StorageReachable=True once the storage answers",
            timeout=120,
        )
        assert up["reason"] == "StorageReachable"
        # the Event follows the status patch of the same pass: wait for it, then count
        reasons = wait_for(
            lambda: "StorageReachable" in (r := [reason for reason, _ in
                                                 events_of(core, namespace, "waits")]) and r,
            "the StorageReachable Event",
            timeout=30,
        )
        assert reasons.count("StorageUnreachable") == 1, reasons
    finally:
        proxy.close()
