"""The process node mounts PersistentVolumeClaims: the bound PV's host directory (hostPath or
local), read-only when the claim says so; a pod whose claim is unbound waits, as on a kubelet."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import allowing, phase_is, pod, read_pod, sh, wait_for

pytestmark = pytest.mark.e2e

MOUNT = "/spotrun-e2e/claim"


@pytest.fixture
def volumes(cluster: Any, namespace: str) -> Iterator[Callable[[str, dict[str, Any]], str]]:
    """``make(claim, source)``: a PV with ``source`` (e.g. {"hostPath": ...}) bound to a new
    claim of that name in ``namespace``; PVs are removed afterwards."""
    core = cluster.core()
    made: list[str] = []

    def make(claim: str, source: dict[str, Any]) -> str:
        pv = f"{namespace}-{claim}"[:63]
        core.create_persistent_volume({"metadata": {"name": pv}, "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
            "storageClassName": "", "persistentVolumeReclaimPolicy": "Retain", **source}})
        made.append(pv)
        core.create_namespaced_persistent_volume_claim(namespace, {
            "metadata": {"name": claim},
            "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": pv,
                     "resources": {"requests": {"storage": "1Gi"}}}})
        wait_for(lambda: core.read_namespaced_persistent_volume_claim(claim, namespace)
                 .status.phase == "Bound", f"claim {claim} to be bound")
        return pv

    yield make
    for pv in made:
        with allowing(404):
            core.delete_persistent_volume(pv)


def claim_volume(claim: str, read_only: bool = False) -> dict[str, Any]:
    return {"name": "data", "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}}


def test_a_claim_mounts_its_volume_and_two_pods_share_it(
    cluster, namespace, process_node, volumes, tmp_path: Path
):
    del process_node  # the volume lives on this machine: local cluster only
    core = cluster.core()
    (tmp_path / "hp").mkdir()
    (tmp_path / "local").mkdir()
    volumes("shared", {"hostPath": {"path": str(tmp_path / "hp"), "type": "Directory"}})
    volumes("node-local", {
        "local": {"path": str(tmp_path / "local")},
        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "spotrun.dev/process-node", "operator": "In", "values": ["true"]}]}]}}})
    mount = [{"name": "data", "mountPath": MOUNT}]
    writer = pod("writer", [{"name": "main", "command": sh(f"echo one > {MOUNT}/note"),
                             "volumeMounts": mount}],
                 volumes=[claim_volume("shared")], restartPolicy="Never")
    core.create_namespaced_pod(namespace, writer)
    wait_for(lambda: phase_is(core, namespace, "writer", "Succeeded"), "writer to succeed")
    assert (tmp_path / "hp" / "note").read_text() == "one\n"

    reader = pod("reader", [{"name": "main", "command": sh(
        f"test \"$(cat {MOUNT}/note)\" = one && ! touch {MOUNT}/more 2>/dev/null"),
        "volumeMounts": mount}], volumes=[claim_volume("shared", read_only=True)],
        restartPolicy="Never")
    local = pod("local", [{"name": "main", "command": sh(f"echo two > {MOUNT}/note"),
                           "volumeMounts": mount}],
                volumes=[claim_volume("node-local")], restartPolicy="Never")
    core.create_namespaced_pod(namespace, reader)
    core.create_namespaced_pod(namespace, local)
    for name in ("reader", "local"):
        done = wait_for(lambda n=name: phase_is(core, namespace, n, "Succeeded", "Failed"),
                        f"{name} to finish")
        assert done.status.phase == "Succeeded", done.status
    assert not (tmp_path / "hp" / "more").exists()  # readOnly: true held
    assert (tmp_path / "local" / "note").read_text() == "two\n"


def test_a_pod_waits_while_its_claim_is_unbound(cluster, namespace, process_node, volumes,
                                                tmp_path: Path):
    core = cluster.core()
    core.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": "later"},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "later-class",
                 "resources": {"requests": {"storage": "1Gi"}}}})
    # A node still there: process_node.nodes() lists preempted ones too (earlier tests preempt).
    alive = {n.metadata.name for n in core.list_node().items}
    node = next(n["name"] for n in process_node.nodes() if n["name"] in alive)
    body = pod("waiting", [{"name": "main", "command": sh(f"cat {MOUNT}/note"),
                            "volumeMounts": [{"name": "data", "mountPath": MOUNT}]}],
               volumes=[claim_volume("later")], restartPolicy="Never", nodeName=node)
    core.create_namespaced_pod(namespace, body)

    def waiting_to_mount() -> Any:
        p = read_pod(core, namespace, "waiting")
        states = [c.state.waiting for c in p.status.container_statuses or []]
        return p.status.phase == "Pending" and states and states[0].message and states[0]

    state = wait_for(waiting_to_mount, "the pod to wait for its volume")
    assert state.reason == "ContainerCreating"
    assert 'persistentvolumeclaim "later" is not bound' in state.message

    # A PV of that class appears, the binder binds the claim, and the pod runs.
    (tmp_path / "pv").mkdir()
    (tmp_path / "pv" / "note").write_text("bound\n")
    core.create_persistent_volume({"metadata": {"name": f"{namespace}-later"[:63]}, "spec": {
        "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
        "storageClassName": "later-class", "persistentVolumeReclaimPolicy": "Retain",
        "hostPath": {"path": str(tmp_path / "pv")}}})
    try:
        done = wait_for(lambda: phase_is(core, namespace, "waiting", "Succeeded", "Failed"),
                        "the pod to run once the claim is bound", timeout=90)
        assert done.status.phase == "Succeeded", done.status
        assert process_node.log(namespace, "waiting", "main") == "bound\n"
    finally:
        core.delete_persistent_volume(f"{namespace}-later"[:63])
