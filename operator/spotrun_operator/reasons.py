"""The words Kubernetes writes when a pod ends, in one place: condition types and reasons,
``status.reason`` values, container termination reasons, node conditions and taints, exit
codes. ``endings.py`` reads pods and nodes with them; each value is quoted from the component
that writes it (kubernetes/kubernetes, paths below), so a test fixture and the code agree.

The job's own condition types and Event reasons are declared next to the status types, in
``models.py`` (``COND_*``, ``REASON_*``).
"""

from __future__ import annotations

# Pod condition types (staging/src/k8s.io/api/core/v1/types.go).
POD_DISRUPTION_TARGET = "DisruptionTarget"
POD_SCHEDULED = "PodScheduled"

# DisruptionTarget reasons: who ended the pod.
BY_KUBELET = "TerminationByKubelet"  # graceful node shutdown, node-pressure eviction
BY_TAINT_MANAGER = "DeletionByTaintManager"  # NoExecute taint (node unreachable/not-ready)
BY_POD_GC = "DeletionByPodGC"  # the pod's node object is gone
BY_EVICTION_API = "EvictionByEvictionAPI"  # kubectl drain, Karpenter, cluster-autoscaler
BY_SCHEDULER = "PreemptionByScheduler"  # a higher-priority pod took the place
DISRUPTION_REASONS = frozenset(
    {BY_KUBELET, BY_TAINT_MANAGER, BY_POD_GC, BY_EVICTION_API, BY_SCHEDULER}
)

# status.reason of a pod the platform ended:
#   Terminated   graceful node shutdown (pkg/kubelet/nodeshutdown, nodeShutdownReason)
#   Shutdown     the same before Kubernetes 1.21
#   NodeShutdown a pod the kubelet refused while shutting down (nodeShutdownNotAdmittedReason)
#   Evicted      the kubelet's node-pressure eviction (pkg/kubelet/eviction)
#   NodeLost     the node controller, kubelet unresponsive (pkg/util/node NodeUnreachablePodReason)
PREEMPTION_REASONS = frozenset({"Evicted", "NodeLost", "Shutdown", "Terminated", "NodeShutdown"})

# containerStatuses[].state.terminated.reason, as the container runtime reports it.
OOM_KILLED = "OOMKilled"

# Node condition and the taints the node lifecycle controller sets from it
# (pkg/controller/nodelifecycle: Ready=False -> not-ready, Ready=Unknown -> unreachable).
NODE_READY = "Ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"

# Taints that announce a node is about to go (Karpenter, AWS NTH, cluster-autoscaler, GKE).
INTERRUPTION_TAINTS = frozenset(
    {
        "karpenter.sh/disrupted",
        "karpenter.sh/disruption",
        "aws-node-termination-handler/spot-itn",
        "aws-node-termination-handler/asg-lifecycle-termination",
        "aws-node-termination-handler/scheduled-maintenance",
        "aws-node-termination-handler/rebalance-recommendation",
        "ToBeDeletedByClusterAutoscaler",
        "cloud.google.com/impending-node-termination",
        "node.kubernetes.io/out-of-service",
    }
)

SIGTERM_EXIT = 143  # 128 + 15: the process ended by SIGTERM
SIGKILL_EXIT = 137  # 128 + 9: SIGKILL at the end of the grace period, or the OOM killer
KILL_EXITS = frozenset({SIGTERM_EXIT, SIGKILL_EXIT})
