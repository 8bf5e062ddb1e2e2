"""Retry elsewhere on kind's real scheduler (README "Retry elsewhere"): after a preemption the
next attempt runs outside the reclaimed zone although a node of that zone is free; once every
zone was reclaimed it still runs: a preference, not a requirement.

The example digits job, submitted with `kubectl apply -f`, with spec.spot.nodeSelectorTerms naming
both workers: for this job the on-demand worker (zone local-a) counts as spot capacity too, beside
the spot worker (local-b). Each interruption is a drain as Karpenter or a node termination handler
makes it: the node cordoned, the attempt's pod evicted through the Eviction API (the trainer saves
on SIGTERM). The node stays: capacity of its zone that is free again once it is uncordoned.

1. The on-demand worker cordoned: digits-1 runs on the spot worker, in local-b.
2. The spot worker drained while the on-demand worker is still cordoned: digits-2 is created
   (warm start) and waits unscheduled, its preferred node affinity NotIn local-b; status.avoiding
   and an AvoidingZone Event say so. Then the scheduler is stopped, both workers are uncordoned
   and the scheduler started again, so that it places digits-2 with both nodes free from its
   first look (two uncordons one after the other would race it): digits-2 runs on the on-demand
   worker in local-a, although the spot worker in local-b is free.
3. The on-demand worker drained: local-a and local-b are both reclaimed and only the spot worker
   is left: digits-3 runs there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.kind.jobs import BOTH_WORKERS, ON_DEMAND_WORKER, SPOT_WORKER, Job, StartDigits
from tests.kind.kindenv import NAME, KindCluster, wait_for

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800)]

ZONE = "topology.kubernetes.io/zone"
# hack/kind/kindconfig.py puts the on-demand worker in zone local-a, the spot worker in local-b
CONTROL_PLANE = f"{NAME}-control-plane"
# kubeadm's static pod: the kubelet stops the scheduler when its manifest leaves this folder
SCHEDULER = "/etc/kubernetes/manifests/kube-scheduler.yaml"
PARKED = "/etc/kubernetes/kube-scheduler.yaml"


@contextmanager
def scheduler_stopped(cluster: KindCluster) -> Iterator[None]:
    """kube-scheduler stopped (its static pod's manifest moved away) for the block, then started
    again: what changes meanwhile, it sees at once when it lists the nodes."""

    def running(*state: str) -> str:
        ps = ("exec", CONTROL_PLANE, "crictl", "ps", "-q", "--name", "kube-scheduler", *state)
        return cluster.docker(*ps).strip()

    cluster.docker("exec", CONTROL_PLANE, "mv", SCHEDULER, PARKED)
    try:
        wait_for("kube-scheduler to stop", lambda: not running() or None, 120)
        yield
    finally:
        cluster.docker("exec", CONTROL_PLANE, "mv", PARKED, SCHEDULER)
        wait_for("kube-scheduler to run", lambda: running("--state", "running") or None, 120)


def drain(job: Job, node: str, pod: str) -> None:
    """NODE cordoned and POD evicted (kubectl drain's way, for one pod)."""
    job.cluster.kubectl("cordon", node)
    job.evict(pod)


def scheduled_on(job: Job, pod: str) -> str | None:
    """The node POD is bound to; None while it is not bound (or not there yet)."""
    listed = json.loads(job.k("get", "pods", "-o", "json"))["items"]
    found = [p for p in listed if p["metadata"]["name"] == pod]
    return (found[0]["spec"].get("nodeName") or None) if found else None


def avoided(job: Job, pod: str) -> list[str]:
    """The zones POD's preferred node affinity keeps away from (NotIn terms on the zone label)."""
    return [value for key, value in job.avoided(pod) if key == ZONE]


def placed_in(job: Job, zone: str) -> bool | None:
    """True once status.placement records ZONE (the operator reads it off the pod's node)."""
    return (job.status().get("placement") or {}).get("zone") == zone or None


def test_the_next_attempt_leaves_the_reclaimed_zone_but_runs_in_it_when_nothing_else_is_left(
    kind_cluster: KindCluster, start_digits: StartDigits
) -> None:
    kind_cluster.kubectl("cordon", ON_DEMAND_WORKER)
    try:
        # 1. digits-1 on the spot worker (started() checks it), in local-b
        job = start_digits("zones-kind", 400, spot={"nodeSelectorTerms": BOTH_WORKERS})
        wait_for("status.placement in local-b", lambda: placed_in(job, "local-b"), 60)

        # 2. local-b reclaimed; digits-2 waits, then chooses with both workers free
        drain(job, SPOT_WORKER, "digits-1")
        wait_for(
            "digits-2 to be created",
            lambda: job.k("get", "pods", "-o", "name").count("digits-2") or None,
            120,
        )
        assert scheduled_on(job, "digits-2") is None, "both workers are cordoned"
        assert avoided(job, "digits-2") == ["local-b"]
        avoiding = wait_for("status.avoiding", lambda: job.status().get("avoiding"), 60)
        assert [(a["zone"], a["attempt"], a["node"]) for a in avoiding] == [
            ("local-b", 1, SPOT_WORKER)
        ], avoiding
        told = wait_for("the AvoidingZone Event", lambda: job.events("AvoidingZone"), 60)
        assert len(told) == 1 and "digits-2" in told[0] and "zone local-b" in told[0], told
        with scheduler_stopped(kind_cluster):
            kind_cluster.kubectl("uncordon", ON_DEMAND_WORKER, SPOT_WORKER)
        second = wait_for("digits-2 to be scheduled", lambda: scheduled_on(job, "digits-2"), 180)
        assert second == ON_DEMAND_WORKER, f"digits-2 went to {second}, in the reclaimed local-b"
        wait_for("digits-2 to run", lambda: job.running_node("digits-2"), 300)
        wait_for("status.placement in local-a", lambda: placed_in(job, "local-a"), 60)

        # 3. local-a reclaimed too: the spot worker in local-b is all that is left
        drain(job, ON_DEMAND_WORKER, "digits-2")
        third = wait_for("digits-3 to be scheduled", lambda: scheduled_on(job, "digits-3"), 180)
        assert third == SPOT_WORKER
        assert sorted(avoided(job, "digits-3")) == ["local-a", "local-b"]
        status = job.status()
        assert status["preemptions"] == 2 and status["failures"] == 0, status
        assert {a["zone"] for a in status["avoiding"]} == {"local-a", "local-b"}, status
    finally:
        kind_cluster.kubectl("uncordon", ON_DEMAND_WORKER, SPOT_WORKER)
