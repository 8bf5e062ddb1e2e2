"""Karpenter's consolidation leaves an attempt's node alone (README: "Karpenter consolidation is
not a spot interruption: attempt pods carry karpenter.sh/do-not-disrupt"), against a real
Karpenter: its kwok provider and KWOK beside the kind cluster (tests/kind/karpenter.py), the
operator helm-installed on kind.

Two NodePools alike (on-demand, family c: Karpenter replaces an on-demand node with a cheaper
one by default, a spot node only behind its SpotToSpotConsolidation gate), one job on each: the
example digits job, submitted with `kubectl apply -f`, its spec.spot.nodeSelectorTerms naming the
pool (`karpenter.sh/nodepool In [pool]`). `protected` keeps the default
spec.disruption.doNotDisrupt; `allowed` sets it false.

1. A filler pod of 2.5 CPU per pool: Karpenter launches a node of 4 CPU (c-4x) for it, and each
   job's digits-1 (1 CPU) is scheduled into the room left beside it.
2. The fillers deleted: each node now holds 1 CPU of 4, and a node of 2 CPU costs half.
   Karpenter replaces `allowed`'s node (a cheaper one launched, digits-1 evicted, the node
   deleted): the operator counts a preemption and digits-2 runs on the new node, preferring
   another zone but not another pool (its own terms pin the pool: docs/retry-elsewhere.md, the
   contradiction Karpenter misreads) and staying there. `protected`'s
   node stays, with Karpenter's DisruptionBlocked Event naming the pod's annotation, and its
   digits-1 runs on untouched.
3. The annotation taken off `protected`'s digits-1 (the pod only) and a pod bound elsewhere
   (`nudge`: Karpenter looks again at once): Karpenter replaces that node too. The annotation
   was all that kept it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.kind import jobs
from tests.kind.karpenter import NODEPOOL, Karpenter, running
from tests.kind.kindenv import KIND_DIR, KindCluster, run, wait_for

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800)]

DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
PROTECTED, ALLOWED = "protected", "allowed"
ZONE = "topology.kubernetes.io/zone"


def nodepool(name: str) -> dict[str, Any]:
    """A NodePool of on-demand amd64 Linux nodes of family c in one zone, consolidated 5 s after
    its last pod event when underutilized, every node at once if need be."""
    requirements = [
        ("kubernetes.io/arch", ["amd64"]),
        ("kubernetes.io/os", ["linux"]),
        ("karpenter.sh/capacity-type", ["on-demand"]),
        ("karpenter.kwok.sh/instance-family", ["c"]),
        ("topology.kubernetes.io/zone", ["test-zone-a"]),
    ]
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "nodeClassRef": {
                        "group": "karpenter.kwok.sh",
                        "kind": "KWOKNodeClass",
                        "name": "default",
                    },
                    "expireAfter": "Never",
                    "requirements": [
                        {"key": k, "operator": "In", "values": v} for k, v in requirements
                    ],
                },
            },
            "disruption": {
                "consolidationPolicy": "WhenEmptyOrUnderutilized",
                "consolidateAfter": "5s",
                "budgets": [{"nodes": "100%"}],
            },
        },
    }


NODE_CLASS = {
    "apiVersion": "karpenter.kwok.sh/v1alpha1",
    "kind": "KWOKNodeClass",
    "metadata": {"name": "default"},
}


def filler(pool: str) -> dict[str, Any]:
    """A bare pod of 2.5 CPU on POOL (KWOK never pulls its image: none is named for real)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"filler-{pool}", "namespace": "default"},
        "spec": {
            "nodeSelector": {NODEPOOL: pool},
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "filler",
                    "image": "filler.invalid/never-pulled",
                    "resources": {"requests": {"cpu": "2500m", "memory": "64Mi"}},
                }
            ],
        },
    }


def on_pool(pool: str) -> dict[str, Any]:
    """spec.spot: this job's spot capacity is POOL's nodes."""
    term = {"matchExpressions": [{"key": NODEPOOL, "operator": "In", "values": [pool]}]}
    return {"nodeSelectorTerms": [term]}


def short_grace(job: dict[str, Any]) -> None:
    """10 s of grace instead of the example's 60: nothing runs on KWOK's pods to save or report
    the end of a save, so the operator keeps an ended attempt's pod (and Karpenter the node it
    drains) until that grace has passed."""
    job["spec"]["terminationGracePeriodSeconds"] = 10


def allow_disruption(job: dict[str, Any]) -> None:
    short_grace(job)
    job["spec"]["disruption"] = {"doNotDisrupt": False}


def delete_fillers(cluster: KindCluster) -> None:
    cluster.kubectl(
        "-n",
        "default",
        "delete",
        "pod",
        "--ignore-not-found",
        "--grace-period=0",
        *(f"filler-{pool}" for pool in (PROTECTED, ALLOWED)),
    )


@contextmanager
def submitted(
    cluster: KindCluster,
    s3: dict[str, str],
    trainer: str,
    pool: str,
    workdir: Path,
    allow: bool,
) -> Iterator[jobs.Job]:
    """The example digits job on POOL in a namespace named for the pool (spec.disruption
    allowing Karpenter if ALLOW); the namespace is deleted after."""
    job = jobs.Job(cluster, s3, pool)
    manifests = workdir / f"{pool}.yaml"
    edit = allow_disruption if allow else short_grace
    manifests.write_text(
        jobs.example_manifests(trainer, s3, job.prefix, 200, on_pool(pool), True, edit)
    )
    cluster.kubectl("create", "namespace", pool)
    try:
        job.k("apply", "-f", str(manifests))
        yield job
    finally:
        cluster.delete_namespace(pool)


def uid(job: jobs.Job, pod: str) -> str:
    return str(job.pod(pod)["metadata"]["uid"])


def replaced(karpenter: Karpenter, node: str) -> bool | None:
    """NODE is gone (Karpenter deleted it once its pods were evicted)."""
    return karpenter.node(node) is None or None


@pytest.fixture(scope="module")
def karpenter_built() -> None:
    """hack/kind/build-parts karpenter kwok: `make test-kind` starts it in the background as the
    tier begins; this waits for that build (build-parts' lock) and builds what is missing."""
    done = run(KIND_DIR / "build-parts", "karpenter", "kwok", timeout=1800)
    assert done.returncode == 0, f"hack/kind/build-parts karpenter kwok:\n{done.stderr[-3000:]}"


def test_consolidation_replaces_the_node_of_an_allowed_job_and_leaves_a_protected_ones_alone(
    karpenter_built: None,
    kind_cluster: KindCluster,
    pushed: dict[str, str],
    kind_s3: dict[str, str],
    operator: None,
    tmp_path: Path,
) -> None:
    with ExitStack() as stack:
        karpenter = stack.enter_context(running(kind_cluster, tmp_path))
        pools = yaml_docs(NODE_CLASS, nodepool(PROTECTED), nodepool(ALLOWED))
        kind_cluster.kubectl("apply", "-f", "-", stdin=pools)

        # 1. a 4-CPU node per pool, for its filler; each job's digits-1 beside it
        fillers = yaml_docs(filler(PROTECTED), filler(ALLOWED))
        kind_cluster.kubectl("apply", "-f", "-", stdin=fillers)
        stack.callback(delete_fillers, kind_cluster)
        for pool in (PROTECTED, ALLOWED):
            wait_for(f"filler-{pool} to run", partial(filler_node, kind_cluster, pool), 300)
        first = {pool: karpenter.nodes(pool) for pool in (PROTECTED, ALLOWED)}
        assert all(len(n) == 1 for n in first.values()), f"one node per pool: {first}"
        big = {pool: nodes[0] for pool, nodes in first.items()}
        for node in big.values():
            labels = (karpenter.node(node) or {})["metadata"]["labels"]
            assert labels["node.kubernetes.io/instance-type"] == "c-4x-amd64-linux", labels

        trainer, s3 = pushed["trainer"], kind_s3
        protected = stack.enter_context(
            submitted(kind_cluster, s3, trainer, PROTECTED, tmp_path, allow=False)
        )
        allowed = stack.enter_context(
            submitted(kind_cluster, s3, trainer, ALLOWED, tmp_path, allow=True)
        )
        for job in (protected, allowed):
            node = wait_for(
                f"{job.namespace}'s digits-1 to run", partial(job.running_node, "digits-1"), 300
            )
            assert node == big[job.namespace], f"digits-1 of {job.namespace} runs on {node}"
        annotations = protected.pod("digits-1")["metadata"].get("annotations") or {}
        assert annotations.get(DO_NOT_DISRUPT) == "true", annotations
        annotations = allowed.pod("digits-1")["metadata"].get("annotations") or {}
        assert DO_NOT_DISRUPT not in annotations, annotations
        kept_uid = uid(protected, "digits-1")

        # 2. both nodes underutilized: only the allowed job's is replaced
        delete_fillers(kind_cluster)
        wait_for(f"{big[ALLOWED]} to be replaced", lambda: replaced(karpenter, big[ALLOWED]), 300)
        moved = wait_for("allowed's digits-2 to run", lambda: allowed.running_node("digits-2"), 300)
        assert moved in karpenter.nodes(ALLOWED) and moved != big[ALLOWED], moved
        # retry elsewhere: another zone preferred, not another pool (the job's terms pin it)
        assert allowed.avoided("digits-2") == [(ZONE, "test-zone-a")]
        status = allowed.status()
        assert (status["preemptions"], status["failures"]) == (1, 0), status
        # Karpenter sends one DisruptionBlocked per node per 2 min (its events' dedupe), and the
        # first was "Node is nominated for a pending pod", when digits-1 was created
        blocked = wait_for(
            "Karpenter's DisruptionBlocked Event for the annotation on the protected node",
            partial(blocked_by_annotation, karpenter, big[PROTECTED]),
            240,
        )
        assert f"Pod={PROTECTED}/digits-1" in blocked[0], blocked
        # Karpenter's loop (10 s) has since looked at the protected node several times
        assert karpenter.nodes(PROTECTED) == [big[PROTECTED]], karpenter.log()
        assert protected.running_node("digits-1") == big[PROTECTED]
        assert uid(protected, "digits-1") == kept_uid
        status = protected.status()
        assert (status.get("preemptions", 0), status.get("failures", 0)) == (0, 0), status

        # 3. the annotation off the pod: nothing else held the protected node
        protected.k("annotate", "pod", "digits-1", f"{DO_NOT_DISRUPT}-")
        nudge(kind_cluster)
        wait_for(
            f"{big[PROTECTED]} to be replaced", lambda: replaced(karpenter, big[PROTECTED]), 300
        )
        moved = wait_for(
            "protected's digits-2 to run", lambda: protected.running_node("digits-2"), 300
        )
        assert moved in karpenter.nodes(PROTECTED), moved


def nudge(cluster: KindCluster) -> None:
    """A pod bound to the on-demand worker, then deleted: Karpenter looks at consolidation
    again when a pod is bound or a node changes, else only every 5 minutes (its cluster
    state's ConsolidationState), and an annotation taken off a pod is neither. The kubelet never
    pulls its image (imagePullPolicy Never)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "nudge", "namespace": "default"},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": jobs.ON_DEMAND_WORKER},
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": False,
            "containers": [
                {"name": "nudge", "image": "nudge.invalid/never-pulled", "imagePullPolicy": "Never"}
            ],
        },
    }
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    try:
        wait_for("the nudge pod to be bound", partial(bound, cluster, "nudge"), 60)
    finally:
        cluster.kubectl("-n", "default", "delete", "pod", "nudge", "--grace-period=0")


def default_pod(cluster: KindCluster, name: str) -> dict[str, Any]:
    """The pod NAME of the default namespace (the fillers' and the nudge's)."""
    pod: dict[str, Any] = json.loads(
        cluster.kubectl("-n", "default", "get", "pod", name, "-o", "json")
    )
    return pod


def bound(cluster: KindCluster, name: str) -> bool | None:
    return bool(default_pod(cluster, name)["spec"].get("nodeName")) or None


def blocked_by_annotation(karpenter: Karpenter, node: str) -> list[str]:
    """Karpenter's DisruptionBlocked Events on NODE that name the do-not-disrupt annotation (it
    sends others too, e.g. "Node is nominated for a pending pod" while a pod is on its way)."""
    messages = karpenter.events_on(node, "DisruptionBlocked")
    return [m for m in messages if f'"{DO_NOT_DISRUPT}" annotation' in m]


def yaml_docs(*docs: dict[str, Any]) -> str:
    return "\n---\n".join(json.dumps(d) for d in docs)


def filler_node(cluster: KindCluster, pool: str) -> str | None:
    pod = default_pod(cluster, f"filler-{pool}")
    running = pod["status"].get("phase") == "Running"
    return str(pod["spec"]["nodeName"]) if running else None
