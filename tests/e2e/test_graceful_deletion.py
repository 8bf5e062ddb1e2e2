"""Graceful deletion like a kubelet: SIGTERM the mains, then the sidecars, SIGKILL at the
deadline, final status, then the pod object is removed."""

from __future__ import annotations

import pytest
from e2e_support import PodHistory, phase_is, pod, sh, wait_for

pytestmark = pytest.mark.e2e


def test_sigterm_reaches_main_first_then_the_sidecar(cluster, namespace, process_node, tmp_path):
    del process_node  # the markers live on this machine (hostPath): local cluster only
    core = cluster.core()
    markers = {"name": "markers", "mountPath": "/spotrun-e2e/markers"}
    sidecar = {
        "name": "sidecar",
        "restartPolicy": "Always",
        "command": sh(
            "trap 'if [ -f /spotrun-e2e/markers/main-terminated ]; "
            "then echo after-main > /spotrun-e2e/markers/sidecar-terminated; "
            "else echo before-main > /spotrun-e2e/markers/sidecar-terminated; fi; exit 0' TERM; "
            "sleep 3600 & wait $!"
        ),
        "volumeMounts": [markers],
    }
    main = {
        "name": "main",
        "command": sh(
            "trap 'sleep 1; test -f /spotrun-e2e/markers/pre-stop && "
            "touch /spotrun-e2e/markers/main-terminated; exit 0' TERM; "
            "touch /spotrun-e2e/markers/main-started; sleep 3600 & wait $!"
        ),
        # the kubelet runs preStop first, then sends SIGTERM
        "lifecycle": {"preStop": {"exec": {"command": ["touch", "/spotrun-e2e/markers/pre-stop"]}}},
        "volumeMounts": [markers],
    }
    manifest = pod("graceful", [main], [sidecar], terminationGracePeriodSeconds=30,
                   volumes=[{"name": "markers", "hostPath": {"path": str(tmp_path)}}])
    core.create_namespaced_pod(namespace, manifest)
    wait_for(lambda: (tmp_path / "main-started").exists(), "the main container to start")
    history = PodHistory(core, namespace, "graceful")

    core.delete_namespaced_pod("graceful", namespace)
    history.wait_deleted(timeout=60)

    assert (tmp_path / "main-terminated").exists()
    assert (tmp_path / "sidecar-terminated").read_text().strip() == "after-main"
    final = history.last_before_deletion()
    assert final.status.container_statuses[0].state.terminated.exit_code == 0
    assert final.status.init_container_statuses[0].state.terminated.exit_code == 0


def test_a_process_ignoring_sigterm_is_killed_at_the_deadline(
    cluster, namespace, process_node, tmp_path
):
    del process_node  # the marker lives on this machine (hostPath): local cluster only
    core = cluster.core()
    main = {
        "name": "stubborn",
        "command": sh("trap '' TERM; touch /spotrun-e2e/markers/started; "
                      "while true; do sleep 0.2; done"),
        "volumeMounts": [{"name": "markers", "mountPath": "/spotrun-e2e/markers"}],
    }
    manifest = pod("stubborn", [main], terminationGracePeriodSeconds=2,
                   volumes=[{"name": "markers", "hostPath": {"path": str(tmp_path)}}])
    core.create_namespaced_pod(namespace, manifest)
    wait_for(lambda: phase_is(core, namespace, "stubborn", "Running"), "the pod to run")
    wait_for(lambda: (tmp_path / "started").exists(), "the container to start")
    history = PodHistory(core, namespace, "stubborn")

    core.delete_namespaced_pod("stubborn", namespace)
    history.wait_deleted(timeout=30)

    final = history.last_before_deletion()
    assert final.status.phase == "Failed"
    assert final.status.container_statuses[0].state.terminated.exit_code == 137
