"""Two operator replicas in a kopf peering: one handles jobs, the other stands by and takes
over when the active one is SIGKILLed; no pod is ever made twice."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from conftest import MANIFESTS, Operator, operators
from e2e_support import allowing, wait_for
from kubernetes import client
from operator_support import ARGS, PLURAL, finished, get_job, running_on, s3_secret
from test_operator_lifecycle import PodLedger
from test_operator_retries import job

pytestmark = pytest.mark.e2e

PEERING = "spotrun"
LIFETIME = 10  # seconds a silent replica still counts as alive (kopf's default is 60)


@pytest.fixture(scope="session")
def peering_crds(cluster: Any) -> None:
    """Apply manifests/kopf-peering-crd.yaml and wait until both CRDs are Established."""
    ext = client.ApiextensionsV1Api(cluster.api)
    docs = [d for d in yaml.safe_load_all((MANIFESTS / "kopf-peering-crd.yaml").read_text()) if d]
    assert {d["spec"]["names"]["kind"] for d in docs} == {"KopfPeering", "ClusterKopfPeering"}
    for body in docs:
        with allowing(409):
            ext.create_custom_resource_definition(body)
    for body in docs:
        name = body["metadata"]["name"]
        wait_for(lambda n=name: any(c.type == "Established" and c.status == "True"
                                    for c in ext.read_custom_resource_definition(n)
                                    .status.conditions or []),
                 f"{name} to be Established")


def peers(custom: client.CustomObjectsApi, namespace: str) -> dict[str, Any]:
    obj = custom.get_namespaced_custom_object("kopf.dev", "v1", namespace, "kopfpeerings",
                                              PEERING)
    return dict(obj.get("status") or {})


def paused(op: Operator) -> bool:
    """kopf starts a peered operator paused; it logs each resume and each later pause."""
    log = op.log()
    return log.rfind("Pausing operations") >= log.rfind("Resuming operations")


def created_pods(op: Operator) -> list[str]:
    return re.findall(r"created pod \S+/(\S+)", op.log())


def test_two_replicas_one_active_and_the_standby_takes_over_after_sigkill(
    cluster, namespace, crd, cluster_role, peering_crds, process_node, s3, s3_bucket, tmp_path
):
    core, custom = cluster.core(), client.CustomObjectsApi(cluster.api)
    s3_secret(core, namespace, s3)
    # kopf joins a peering only when its object exists (in namespace mode: a KopfPeering there).
    custom.create_namespaced_custom_object("kopf.dev", "v1", namespace, "kopfpeerings", {
        "apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": PEERING}})
    with operators(cluster, namespace, cluster_role, tmp_path, count=2,
                   args=["--peering", PEERING],
                   env={"SPOTRUN_PEERING_LIFETIME": str(LIFETIME)}) as ops:
        records = wait_for(lambda: len(p := peers(custom, namespace)) == 2 and p,
                           "both replicas in the peering")
        # Distinct priorities (equal ones would pause both): the highest is active, the other
        # pauses (silently when it joins after the active one).
        assert len({r["priority"] for r in records.values()}) == 2, records
        leader = max(records, key=lambda identity: records[identity]["priority"])
        active = next(op for op in ops if op.env["POD_ID"] == leader)
        standby = next(op for op in ops if op is not active)
        wait_for(lambda: paused(standby) and not paused(active), "one active, one paused")

        ledger = PodLedger(core, namespace)
        custom.create_namespaced_custom_object(*ARGS, namespace, PLURAL, job(
            "peer", s3_bucket, s3.endpoint_url, {"PREEMPTIBLE_ATTEMPTS": "1"}, port=18710,
            spot={"backoffSeconds": 0.5}))
        node = wait_for(lambda: running_on(core, namespace, "peer-1"), "peer-1 to run",
                        timeout=120)
        assert (created_pods(active), created_pods(standby)) == (["peer-1"], [])

        # The active replica dies; the job needs the next decision (a preemption) now.
        active.kill()
        seen = len(standby.log())
        process_node.preempt(node)
        process_node.add_node("spot")
        done = wait_for(lambda: finished(custom, namespace, "peer"), "the job to finish",
                        timeout=120)
        status = done["status"]
        assert status["phase"] == "Succeeded", status
        assert (status["preemptions"], status["attempt"]) == (1, 2)
        assert "Resuming operations after the pause" in standby.log()[seen:]
        assert created_pods(standby) == ["peer-2"]
        ledger.stop()
        assert all(len(uids) == 1 for uids in ledger.uids.values()), ledger.uids
        assert ledger.most_alive == {"peer": 1}, ledger.most_alive
        assert get_job(custom, namespace, "peer")["status"]["phase"] == "Succeeded"

