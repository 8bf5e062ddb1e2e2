"""Node objects of the process node: labels and taints of spot / on-demand capacity, Leases."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from typing import Any

Obj = dict[str, Any]

SPOT = "spot"
ON_DEMAND = "on-demand"

# The taint AKS puts on spot pools; pods meant for spot capacity tolerate it. GKE and
# Karpenter label spot nodes without a taint; AKS's taint keeps plain pods off spot here.
SPOT_TAINT: Obj = {
    "key": "kubernetes.azure.com/scalesetpriority",
    "value": "spot",
    "effect": "NoSchedule",
}
# The NoSchedule taint the API server puts on a new Node until the node lifecycle controller
# has seen it Ready.
NOT_READY_TAINT_KEY = "node.kubernetes.io/not-ready"

# What a spot interruption puts on the node (Karpenter's disruption taint).
INTERRUPTION_TAINT: Obj = {"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}
PROCESS_NODE_LABEL = "spotrun.dev/process-node"
LEASE_DURATION_SECONDS = 40


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def labels(name: str, capacity_type: str, zone: str) -> dict[str, str]:
    spot = capacity_type == SPOT
    out = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "m5.2xlarge",
        "topology.kubernetes.io/region": "local",
        "topology.kubernetes.io/zone": zone,
        "karpenter.sh/capacity-type": SPOT if spot else ON_DEMAND,
        "eks.amazonaws.com/capacityType": "SPOT" if spot else "ON_DEMAND",
        PROCESS_NODE_LABEL: "true",
    }
    if spot:
        out["cloud.google.com/gke-spot"] = "true"
        out["kubernetes.azure.com/scalesetpriority"] = "spot"
    return out


def conditions(ready: bool = True) -> list[Obj]:
    t = now()
    pressure = [
        ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ]
    out = [
        {"type": kind, "status": "False", "reason": reason, "message": message,
         "lastHeartbeatTime": t, "lastTransitionTime": t}
        for kind, reason, message in pressure
    ]
    out.append(
        {
            "type": "Ready",
            "status": "True" if ready else "False",
            "reason": "KubeletReady",
            "message": "process node is posting ready status",
            "lastHeartbeatTime": t,
            "lastTransitionTime": t,
        }
    )
    return out


def capacity(gpus: int = 0) -> dict[str, str]:
    out = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    if gpus:
        out["nvidia.com/gpu"] = str(gpus)
    return out


def node_object(name: str, capacity_type: str, zone: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels(name, capacity_type, zone),
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"taints": [SPOT_TAINT] if capacity_type == SPOT else []},
    }


def node_status(resources: dict[str, str], port: int) -> Obj:
    return {
        "capacity": resources,
        "allocatable": resources,
        "conditions": conditions(),
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": "localhost"},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {
            "architecture": "amd64",
            "operatingSystem": "linux",
            "osImage": "spotrun process node",
            "kernelVersion": platform.release(),
            "kubeletVersion": "v0.0.0-process-node",
            "kubeProxyVersion": "",
            "containerRuntimeVersion": "process://0.1",
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
        },
    }


def lease_object(node_name: str, node_uid: str) -> Obj:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node_name,
            "namespace": "kube-node-lease",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}
            ],
        },
        "spec": {
            "holderIdentity": node_name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": now_micro(),
        },
    }
