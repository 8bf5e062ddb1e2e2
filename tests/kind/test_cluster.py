"""A kind cluster on the node image built offline (hack/kind/node-image, hack/kind/up).

`pytest -m kind tests/kind/test_cluster.py` builds what is missing
(cold: the node image's parts and images, minutes), brings the cluster up, runs a pod from an
image built here, and removes the cluster (and stops the Docker engine if it started it).
"""

from __future__ import annotations

import json
import secrets

import pytest

from tests.kind.kindenv import (
    KIND,
    KIND_DIR,
    KUBECTL,
    NAME,
    REPO,
    STOCK_NODE_IMAGE,
    VERSIONS,
    KindCluster,
)
from tests.kind.kindenv import run as _run

# Cold, the module's first setup builds the node image's parts (CoreDNS alone: ~15 min on 2
# busy cores), so the tier's 900 s default is too short here.
pytestmark = [pytest.mark.kind, pytest.mark.timeout(3600)]


def test_every_node_is_ready_with_our_kubelet_and_coredns_runs(kind_cluster: KindCluster) -> None:
    nodes = json.loads(kind_cluster.kubectl("get", "nodes", "-o", "json"))["items"]
    names = sorted(n["metadata"]["name"] for n in nodes)
    assert names == [f"{NAME}-control-plane", f"{NAME}-worker", f"{NAME}-worker2"]
    for node in nodes:
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", (node["metadata"]["name"], ready)
        # The kubelet hack/kind built (kubernetes-node), not some other one.
        if not STOCK_NODE_IMAGE:
            assert node["status"]["nodeInfo"]["kubeletVersion"] == VERSIONS["KUBERNETES_VERSION"]
        assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://2.")
    pods = json.loads(
        kind_cluster.kubectl(
            "-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns", "-o", "json"
        )
    )["items"]
    assert pods, "no CoreDNS pods"
    assert all(p["status"]["phase"] == "Running" for p in pods), [p["status"] for p in pods]
    images = {c["image"] for p in pods for c in p["spec"]["containers"]}
    if not STOCK_NODE_IMAGE:  # ours, under kubeadm's tag
        assert images == {f"registry.k8s.io/coredns/coredns:{VERSIONS['COREDNS_VERSION']}"}


def test_a_pod_sees_its_image_filesystem_not_the_hosts(kind_cluster: KindCluster) -> None:
    token = secrets.token_hex(8)
    image = f"spotrun.local/kind-probe:{token}"
    base = _run(KIND_DIR / "base-image", env=kind_cluster.env)
    assert base.returncode == 0, base.stderr
    context = f"FROM {base.stdout.strip()}\nRUN echo {token} > /spotrun-probe\n"
    done = _run(
        "docker", "build", "--quiet", "--tag", image, "-", env=kind_cluster.env, stdin=context
    )
    assert done.returncode == 0, done.stderr
    try:
        load = _run(KIND, "load", "docker-image", "--name", NAME, image, env=kind_cluster.env)
        assert load.returncode == 0, load.stderr
        script = (
            f"cat /spotrun-probe; test -e {REPO} && echo host-repo-visible || echo no-host-repo"
        )
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "probe", "namespace": "default"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "probe",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "command": ["sh", "-c", script],
                    }
                ],
            },
        }
        kind_cluster.kubectl("apply", "-f", "-", stdin=json.dumps(pod))
        kind_cluster.kubectl(
            "wait", "pod/probe", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=180s"
        )
        assert kind_cluster.kubectl("logs", "probe").split() == [token, "no-host-repo"]
        node = kind_cluster.kubectl("get", "pod", "probe", "-o", "jsonpath={.spec.nodeName}")
        assert node == f"{NAME}-worker"  # the control plane keeps its NoSchedule taint
    finally:
        _run(
            KUBECTL,
            "delete",
            "pod",
            "probe",
            "--ignore-not-found",
            "--wait=false",
            env=kind_cluster.env,
        )
        _run("docker", "rmi", image, env=kind_cluster.env)


# The Debian base with socat and getent, preloaded in every node as kind's local-path helper.
BASE_IN_NODES = "docker.io/kindest/local-path-helper:v20260131-7181c60a"


def _pod(name: str, node: str, script: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,  # placed by hand: the control plane's NoSchedule taint does not apply
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": name,
                    "image": BASE_IN_NODES,
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", script],
                }
            ],
        },
    }


def test_pods_on_different_nodes_reach_each_other_and_resolve_services(
    kind_cluster: KindCluster,
) -> None:
    """spotrun-cni's routes (pod to pod across nodes) and CoreDNS through the service IP."""
    server = _pod("server", f"{NAME}-worker", "exec socat TCP-LISTEN:8080,fork SYSTEM:'echo hello'")
    try:
        kind_cluster.kubectl("apply", "-f", "-", stdin=json.dumps(server))
        kind_cluster.kubectl(
            "wait", "pod/server", "--for=jsonpath={.status.phase}=Running", "--timeout=120s"
        )
        ip = kind_cluster.kubectl("get", "pod", "server", "-o", "jsonpath={.status.podIP}")
        script = (
            "getent hosts kubernetes.default.svc.cluster.local | cut -d' ' -f1;"
            f" for i in $(seq 30); do socat -T2 - TCP:{ip}:8080 </dev/null && exit 0; sleep 1;"
            " done; exit 1"
        )
        client = _pod("client", f"{NAME}-control-plane", script)
        kind_cluster.kubectl("apply", "-f", "-", stdin=json.dumps(client))
        kind_cluster.kubectl(
            "wait", "pod/client", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=120s"
        )
        service_ip = kind_cluster.kubectl(
            "get", "service", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"
        )
        assert kind_cluster.kubectl("logs", "client").split() == [service_ip, "hello"]
    finally:
        kind_cluster.kubectl(
            "delete", "pod", "server", "client", "--ignore-not-found", "--wait=false"
        )
