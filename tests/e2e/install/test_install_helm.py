"""`helm install` of charts/spotrun: the operator the chart deploys (a pod of the chart's
spec, under the chart's RBAC, watching only the release's namespace) runs the example digits
job to Succeeded; `helm uninstall` removes the operator and keeps the CRD."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest
from e2e_support import wait_for
from install_support import (
    CHART,
    Tools,
    delete_jobs_and_wait,
    disown_crd,
    operator_pod,
    run_example_job,
)
from kubernetes import client
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.e2e

RELEASE = "spotrun-e2e"
# The process node shares the host network: ports of this test's own (18800-18899).
SETS = ("ports.health=18881", "ports.metrics=18882", "logLevel=DEBUG")


def test_helm_install_runs_a_job_to_succeeded(
    cluster: Any, tools: Tools, namespace: str, s3: Any, s3_bucket: str
) -> None:
    core = cluster.core()
    sets = [*SETS, f"watchNamespaces={{{namespace}}}"]
    # --take-ownership: the CRD may already be there (applied from manifests/ by other tests).
    tools.helm("install", RELEASE, str(CHART), "-n", namespace, "--take-ownership",
               "--wait", "--timeout", "180s", *[a for s in sets for a in ("--set", s)])
    try:
        pod = wait_for(lambda: operator_pod(core, namespace, RELEASE), "the operator to run")
        if cluster.process_node is not None:  # no spot toleration: an on-demand node
            node = core.read_node(pod.spec.node_name)
            assert node.metadata.labels["karpenter.sh/capacity-type"] == "on-demand"
            metrics = urllib.request.urlopen(f"http://{pod.status.pod_ip}:18882/metrics")
            assert 'spotrun_jobs{phase="Running"}' in metrics.read().decode()

        status = run_example_job(cluster.api, namespace, s3, s3_bucket, port=18801)["status"]
        assert status["phase"] == "Succeeded", status
        assert status["lastCheckpoint"]["step"] == 45  # one epoch of digits
        assert (status["attempt"], status["preemptions"], status["failures"]) == (1, 0, 0)
        log = core.read_namespaced_pod_log(pod.metadata.name, namespace, container="operator")
        assert f"created pod {namespace}/digits-1" in log  # this operator did the work
    finally:
        delete_jobs_and_wait(cluster.api, namespace)
        tools.helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "120s")

    apps, rbac = client.AppsV1Api(cluster.api), client.RbacAuthorizationV1Api(cluster.api)
    assert not apps.list_namespaced_deployment(namespace).items
    with pytest.raises(ApiException) as gone:
        rbac.read_cluster_role(f"{RELEASE}-operator")
    assert gone.value.status == 404
    ext = client.ApiextensionsV1Api(cluster.api)
    kept = ext.read_custom_resource_definition("resumabletrainingjobs.spotrun.dev")
    assert kept.metadata.annotations["helm.sh/resource-policy"] == "keep"
    disown_crd(cluster.api)
