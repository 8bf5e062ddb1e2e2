"""Retry elsewhere on the local control plane: after a spot interruption in zone A the next
attempt runs on the zone-B node although a zone-A spot node is free (a preferred node affinity
away from the reclaimed zone, set on the warm-started pod); once zone B is reclaimed too, only a
zone-A node is left and the next attempt still runs there: a preference, not a requirement.

The job selects only this test's nodes (zones of its own, by spec.spot.nodeSelectorTerms), so the
cluster's other nodes play no part. Sidecar port 18791."""

from __future__ import annotations

import uuid

import pytest
from e2e_support import read_pod, wait_for
from operator_support import events_of, finished, status_of, submit
from test_operator_retries import job

pytestmark = pytest.mark.e2e

ZONE = "topology.kubernetes.io/zone"


def scheduled_on(core, namespace: str, pod: str) -> str | None:
    p = read_pod(core, namespace, pod)
    return str(p.spec.node_name) if p is not None and p.spec.node_name else None


def avoided(core, namespace: str, pod: str) -> list[str]:
    """The zones the pod's preferred node affinity keeps away from (its required terms name
    no zone but the job's own selector: nothing there was added)."""
    affinity = read_pod(core, namespace, pod).spec.affinity.node_affinity
    required = affinity.required_during_scheduling_ignored_during_execution.node_selector_terms
    assert all(e.operator == "In" for t in required for e in t.match_expressions)
    return [
        value
        for term in affinity.preferred_during_scheduling_ignored_during_execution or []
        for e in term.preference.match_expressions
        if e.key == ZONE and e.operator == "NotIn"
        for value in e.values
    ]


def avoiding_events(core, namespace: str, count: int) -> list[str] | None:
    """The AvoidingZone Events' messages once there are ``count`` (an Event follows the status
    patch of its pass)."""
    told = [m for r, m in events_of(core, namespace, "zones") if r == "AvoidingZone"]
    return told if len(told) >= count else None


def test_the_next_attempt_prefers_another_zone_but_runs_in_a_reclaimed_one_if_it_must(
    cluster, namespace, operator, process_node, s3, s3_bucket
):
    tag = uuid.uuid4().hex[:6]
    zone_a, zone_b = f"zt-{tag}-a", f"zt-{tag}-b"
    in_a = {process_node.add_node("spot", zone=zone_a) for _ in range(2)}
    mine = {"matchExpressions": [
        {"key": ZONE, "operator": "In", "values": [zone_a, zone_b]},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]},
    ]}
    # attempts 1 and 2 train until SIGTERM, attempt 3 ends at once (exit 0)
    body = job("zones", s3_bucket, s3.endpoint_url, {"PREEMPTIBLE_ATTEMPTS": "2"}, 18791,
               spot={"nodeSelectorTerms": [mine]})
    core, custom = submit(cluster, namespace, s3, body)

    first = wait_for(lambda: scheduled_on(core, namespace, "zones-1"), "zones-1 to be scheduled",
                     timeout=120)
    assert first in in_a
    wait_for(lambda: status_of(custom, namespace, "zones").get("placement", {}).get("zone")
             == zone_a, "the operator to record zones-1's zone", timeout=60)
    (free_a,) = in_a - {first}
    in_b = process_node.add_node("spot", zone=zone_b)

    process_node.preempt(first)
    second = wait_for(lambda: scheduled_on(core, namespace, "zones-2"), "zones-2 to be scheduled",
                      timeout=120)
    assert second == in_b, f"zones-2 went to {second}, not {in_b}; {free_a} in {zone_a} was free"
    assert avoided(core, namespace, "zones-2") == [zone_a]
    # the pod is created before the status patch of its pass: wait for the status
    avoiding = wait_for(lambda: status_of(custom, namespace, "zones").get("avoiding"),
                        "status.avoiding", timeout=60)
    assert [(a["zone"], a["attempt"], a["node"]) for a in avoiding] == [(zone_a, 1, first)]
    told = wait_for(lambda: avoiding_events(core, namespace, 1), "the AvoidingZone Event")
    assert len(told) == 1 and "zones-2" in told[0] and f"zone {zone_a}" in told[0]
    assert avoiding[0]["until"] in told[0]

    wait_for(lambda: status_of(custom, namespace, "zones").get("placement", {}).get("zone")
             == zone_b, "the operator to record zones-2's zone", timeout=60)
    process_node.preempt(in_b)
    # both zones reclaimed; only the zone-A node is left: preferences only, so it runs there
    third = wait_for(lambda: scheduled_on(core, namespace, "zones-3"), "zones-3 to be scheduled",
                     timeout=120)
    assert third == free_a
    assert sorted(avoided(core, namespace, "zones-3")) == sorted([zone_a, zone_b])
    done = wait_for(lambda: finished(custom, namespace, "zones"), "the job to finish",
                    timeout=180)
    status = done["status"]
    assert status["phase"] == "Succeeded" and status["preemptions"] == 2
    assert {a["zone"] for a in status["avoiding"]} == {zone_a, zone_b}
    told = wait_for(lambda: avoiding_events(core, namespace, 2), "the second AvoidingZone Event")
    assert len(told) == 2
    (third_told,) = [m for m in told if m.startswith("zones-3 ")]
    assert f"zone {zone_a}" in third_told and f"zone {zone_b}" in third_told
    process_node.preempt(free_a)  # leave no node of these zones behind
