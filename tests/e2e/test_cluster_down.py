"""`hack/cluster --process up` twice is harmless and `hack/cluster --process down` leaves no
process behind — run against a cluster of its own (its own state dir), pods included."""

from __future__ import annotations

import os
import subprocess

import pytest
from e2e_support import phase_is, pod, sh, wait_for
from kubernetes import client
from kubernetes import config as kube_config

from localcluster import config, procs, state

pytestmark = pytest.mark.e2e


def _hack_cluster(env, *args):
    return subprocess.run([str(config.HACK_DIR / "cluster"), "--process", *args], env=env,
                          check=True, capture_output=True, text=True, timeout=300)


def test_up_twice_then_down_leaves_no_process(process_node, tmp_path):
    del process_node  # only where the local cluster runs (binaries built, root)
    st = tmp_path / "state"
    env = dict(os.environ, SPOTRUN_STATE_DIR=str(st))
    try:
        _hack_cluster(env, "up", "--spot", "1", "--on-demand", "1")
        again = _hack_cluster(env, "up", "--spot", "1", "--on-demand", "1")
        assert "already running" in again.stdout
        record = state.load(st)
        assert record.control_plane is not None
        core = client.CoreV1Api(kube_config.new_client_from_config(record.control_plane.kubeconfig))
        wait_for(lambda: core.list_namespaced_service_account(
            "default", field_selector="metadata.name=default").items, "the default ServiceAccount")
        core.create_namespaced_pod("default", pod("sleeper", [
            {"name": "main", "command": sh("trap '' TERM; sleep 3600")}]))
        wait_for(lambda: phase_is(core, "default", "sleeper", "Running"), "the pod to run")
        assert len(procs.marked_pids(st)) >= 7  # 6 components + the pod's process

        _hack_cluster(env, "down")

        assert procs.marked_pids(st) == []
    finally:
        procs.sweep(st)
