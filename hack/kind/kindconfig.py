"""The kind cluster's config (JSON, which kind reads as YAML), printed by
`kindconfig.py API_PORT PLAIN SPOT ON_DEMAND RWX`: a control plane, PLAIN unlabelled workers,
then ON_DEMAND on-demand and SPOT spot workers.

Every worker mounts the host's directory RWX at RWX_PATH: a hostPath PersistentVolume under it
is the same files on every node, as an NFS export is, so a ReadWriteMany claim can be tested
across nodes (tests/kind/test_pvc_on_kind.py).

Spot and on-demand workers carry exactly the labels and taint of hack/'s process nodes
(localcluster/node/nodes.py: capacity-type labels of Karpenter, EKS, GKE and AKS, a zone of
local-a/b/c by count, AKS's spot taint), less what the kubelet sets itself (hostname, os, arch)
and the process-node marker: these are real kubelets. The labels go to the kubelet's
--node-labels (kind's `labels`) and the taint to kubeadm's JoinConfiguration, which passes it
to the kubelet as --register-with-taints: both are kept in the node's
/var/lib/kubelet/kubeadm-flags.env, so a restarted worker registers again with them, before
any pod can be scheduled on it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localcluster.node import nodes  # noqa: E402

KUBELET_SETS = ("kubernetes.io/hostname", "kubernetes.io/os", "kubernetes.io/arch")
# GKE's spot and preemptible nodes: 30 s in all, the last 15 s for system-critical pods, so a
# regular pod has 15 s (README "Grace periods on real platforms")
SHUTDOWN_GRACE, SHUTDOWN_GRACE_CRITICAL = "30s", "15s"
RWX_PATH = "/mnt/spotrun-rwx"


def node_labels(capacity_type: str, zone: str) -> dict[str, str]:
    labels = nodes.labels("", capacity_type, zone)
    for key in (*KUBELET_SETS, nodes.PROCESS_NODE_LABEL):
        labels.pop(key)
    return labels


def zone(index: int) -> str:
    """local-a/b/c by count, as the process node's manager gives them."""
    return "local-" + "abc"[index % 3]


def worker(capacity_type: str | None, index: int, rwx: str) -> dict[str, Any]:
    node: dict[str, Any] = {
        "role": "worker",
        "extraMounts": [{"hostPath": rwx, "containerPath": RWX_PATH}],
    }
    if capacity_type is None:
        return node
    node["labels"] = node_labels(capacity_type, zone(index))
    if capacity_type == nodes.SPOT:
        taint = {k: nodes.SPOT_TAINT[k] for k in ("key", "value", "effect")}
        join = {"kind": "JoinConfiguration", "nodeRegistration": {"taints": [taint]}}
        node["kubeadmConfigPatches"] = [json.dumps(join)]
    return node


def config(api_port: int, plain: int, spot: int, on_demand: int, rwx: str) -> dict[str, Any]:
    workers = [worker(None, i, rwx) for i in range(plain)]
    workers += [worker(nodes.ON_DEMAND, i, rwx) for i in range(on_demand)]
    workers += [worker(nodes.SPOT, on_demand + i, rwx) for i in range(spot)]
    kubelet = {
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        # graceful node shutdown, as GKE sets it on spot nodes: a shutdown through logind
        # (hack/kind/preempt NODE --shutdown, an ACPI power-off's path) ends the pods in time
        "shutdownGracePeriod": SHUTDOWN_GRACE,
        "shutdownGracePeriodCriticalPods": SHUTDOWN_GRACE_CRITICAL,
    }
    return {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "networking": {"apiServerAddress": "127.0.0.1", "apiServerPort": api_port},
        "nodes": [{"role": "control-plane"}, *workers],
        # the host has cgroup v1, which Kubernetes >= 1.35 refuses unless told
        "kubeadmConfigPatches": [json.dumps(kubelet)],
        # hack/kind/registry writes hosts.toml files there
        "containerdConfigPatches": [
            '[plugins."io.containerd.grpc.v1.cri".registry]\n'
            '  config_path = "/etc/containerd/certs.d"\n'
        ],
    }


def main(argv: list[str]) -> int:
    usage = "usage: kindconfig.py API_PORT PLAIN SPOT ON_DEMAND RWX"
    try:
        *numbers, rwx = argv
        api_port, plain, spot, on_demand = (int(a) for a in numbers)
    except ValueError:
        print(usage, file=sys.stderr)
        return 2
    print(json.dumps(config(api_port, plain, spot, on_demand, rwx), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
