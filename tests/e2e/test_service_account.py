"""Pods get a real projected ServiceAccount token: in-cluster clients work, RBAC applies."""

from __future__ import annotations

import json

import pytest
from e2e_support import phase_is, pod, wait_for
from kubernetes import client

pytestmark = pytest.mark.e2e

SCRIPT = """
import json
from kubernetes import client, config
config.load_incluster_config()
v1 = client.CoreV1Api()
sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
namespace = open(sa_dir + "/namespace").read()
pods = [p.metadata.name for p in v1.list_namespaced_pod(namespace).items]
result = {"namespace": namespace, "pods": pods}
try:
    v1.list_namespaced_pod("kube-system")
    result["kube-system"] = "allowed"
except client.ApiException as err:
    result["kube-system"] = err.status
open("/dev/termination-log", "w").write(json.dumps(result))
"""


def test_in_cluster_client_lists_pods_and_is_refused_elsewhere(cluster, namespace):
    core = cluster.core()
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "lister"}})
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "pod-lister"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
    })
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "lister-lists-pods"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-lister"},
        "subjects": [{"kind": "ServiceAccount", "name": "lister", "namespace": namespace}],
    })
    main = {"name": "main", "command": ["python", "-c", SCRIPT]}
    core.create_namespaced_pod(
        namespace, pod("in-cluster", [main], restartPolicy="Never", serviceAccountName="lister")
    )

    done = wait_for(lambda: phase_is(core, namespace, "in-cluster", "Succeeded", "Failed"),
                    "the pod to finish", timeout=90)
    terminated = done.status.container_statuses[0].state.terminated
    assert done.status.phase == "Succeeded", terminated.message
    result = json.loads(terminated.message)
    assert result["namespace"] == namespace
    assert "in-cluster" in result["pods"]
    assert result["kube-system"] == 403
