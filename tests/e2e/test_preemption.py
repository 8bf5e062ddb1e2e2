"""Spot interruptions and dead kubelets, as the control plane sees them."""

from __future__ import annotations

import pytest
from e2e_support import SPOT_TOLERATION, PodHistory, condition, phase_is, pod, sh, wait_for
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.e2e

WORKER = sh("trap 'exit 0' TERM; sleep 3600 & wait $!")


def _node_exists(core, name):
    try:
        core.read_node(name)
        return True
    except ApiException as err:
        if err.status == 404:
            return False
        raise


def test_preempt_evicts_with_disruption_target_and_removes_the_node(
    cluster, namespace, process_node
):
    core = cluster.core()
    doomed = process_node.add_node("spot")
    node = core.read_node(doomed)
    assert node.metadata.labels["karpenter.sh/capacity-type"] == "spot"
    assert node.metadata.labels["cloud.google.com/gke-spot"] == "true"
    assert any(t.key == SPOT_TOLERATION["key"] for t in node.spec.taints)
    core.create_namespaced_pod(namespace, pod(
        "victim", [{"name": "main", "command": WORKER}],
        tolerations=[SPOT_TOLERATION], nodeSelector={"kubernetes.io/hostname": doomed},
    ))
    wait_for(lambda: phase_is(core, namespace, "victim", "Running"), "the victim to run")
    history = PodHistory(core, namespace, "victim")

    process_node.preempt(doomed, notice_seconds=1)

    history.wait_deleted(timeout=60)
    disrupted = [v for v in history.versions if condition(v, "DisruptionTarget")]
    assert disrupted, "the evicted pod never carried the DisruptionTarget condition"
    assert condition(disrupted[-1], "DisruptionTarget").status == "True"
    wait_for(lambda: not _node_exists(core, doomed), f"node {doomed} to be deleted")

    core.create_namespaced_pod(namespace, pod(
        "replacement", [{"name": "main", "command": WORKER}],
        tolerations=[SPOT_TOLERATION], nodeSelector={"karpenter.sh/capacity-type": "spot"},
    ))
    running = wait_for(lambda: phase_is(core, namespace, "replacement", "Running"),
                       "the replacement to run on another spot node")
    assert running.spec.node_name != doomed
    assert core.read_node(running.spec.node_name).metadata.labels[
        "karpenter.sh/capacity-type"] == "spot"


def test_a_node_whose_lease_goes_stale_becomes_not_ready(cluster, process_node):
    core = cluster.core()
    name = process_node.add_node("spot")
    wait_for(lambda: condition(core.read_node(name), "Ready").status == "True",
             f"node {name} to be Ready")
    process_node.stop_lease(name)
    try:
        ready = wait_for(
            lambda: (c := condition(core.read_node(name), "Ready")).status != "True" and c,
            f"node {name} to go NotReady", timeout=90,
        )
        assert ready.status == "Unknown"
        assert ready.reason == "NodeStatusUnknown"
    finally:
        core.delete_node(name)
