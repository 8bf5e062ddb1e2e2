"""`kubectl apply -f manifests/crd.yaml -f manifests/install.yaml`: the plain manifests'
operator (cluster-wide, in spotrun-system) runs the example digits job to Succeeded."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from e2e_support import wait_for
from install_support import (
    MANIFESTS,
    Tools,
    delete_jobs_and_wait,
    load,
    operator_pod,
    run_example_job,
    with_ports,
)

pytestmark = pytest.mark.e2e

SYSTEM = "spotrun-system"


def test_kubectl_apply_install_yaml_runs_a_job_to_succeeded(
    cluster: Any, tools: Tools, namespace: str, s3: Any, s3_bucket: str
) -> None:
    core = cluster.core()
    # Only the ports change: on the process node all pods share this machine's network.
    docs = with_ports(load(MANIFESTS / "install.yaml"), health=18883, metrics=18884)
    text = yaml.safe_dump_all(docs)
    existed = tools.kubectl("get", "-f", "-", "-o", "name", "--ignore-not-found", stdin=text)
    tools.kubectl("apply", "-f", str(MANIFESTS / "crd.yaml"))
    tools.kubectl("wait", "--for=condition=Established",
                  "crd/resumabletrainingjobs.spotrun.dev", "--timeout=60s")
    tools.kubectl("apply", "-f", "-", stdin=text)
    try:
        pod = wait_for(lambda: operator_pod(core, SYSTEM, "spotrun"), "the operator to run",
                       timeout=180)
        status = run_example_job(cluster.api, namespace, s3, s3_bucket, port=18802)["status"]
        assert status["phase"] == "Succeeded", status
        assert status["lastCheckpoint"]["step"] == 45
        log = core.read_namespaced_pod_log(pod.metadata.name, SYSTEM, container="operator")
        assert f"created pod {namespace}/digits-1" in log  # this operator did the work
    finally:
        delete_jobs_and_wait(cluster.api, namespace)
        # Leave what was there before (e.g. the ClusterRole the operator tests bind).
        ours = [d for d in docs if _object_name(d) not in existed.split()]
        tools.kubectl("delete", "--wait=true", "--timeout=120s", "-f", "-",
                      stdin=yaml.safe_dump_all(ours))


def _object_name(doc: dict[str, Any]) -> str:
    """As `kubectl get -o name` prints it: ``clusterrole.rbac.authorization.k8s.io/x``."""
    group = doc["apiVersion"].rpartition("/")[0]
    return f"{doc['kind'].lower()}{'.' + group if group else ''}/{doc['metadata']['name']}"
