"""Retry elsewhere: a preempted attempt's zone / node pool is recorded while it runs, and the next
attempts prefer other places for spec.spot.avoidReclaimedSeconds (a preference, never a
requirement), merged with the template's own affinity. Pure decisions, no cluster."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from spotrun_operator import crd, zones
from spotrun_operator.builders import desired_pod
from spotrun_operator.decisions import plan
from spotrun_operator.models import AvoidedPlace, JobSpec, Placement
from tests.unit.operator.test_decisions import NOW, ended_pod, job
from tests.unit.operator.test_warm_start import digits, load, when

pytestmark = pytest.mark.unit

PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"


def node(name: str = "spot-1", **labels: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "spec": {}}


def in_zone(zone: str, name: str = "spot-1", **labels: Any) -> dict[str, Any]:
    return node(name, **{zones.ZONE_LABEL: zone}, **labels)


def running_pod(attempt: int) -> dict[str, Any]:
    pod = desired_pod(job(), attempt, on_demand=False, gpus_available=False)
    pod["spec"]["nodeName"] = "spot-1"
    pod["status"] = {"phase": "Running", "startTime": "2026-01-01T11:00:00Z"}
    return pod


def first_seen_on(where: dict[str, Any]) -> Any:
    """The pass that first sees attempt 1's pod running on the node ``where``."""
    return plan(
        job({"attempt": 1, "activePod": "a-1"}), [running_pod(1)], {"spot-1": where}, False, NOW
    )


def avoided_values(pod: dict[str, Any]) -> dict[tuple[str, str], int]:
    """(label, value) the pod prefers to avoid -> the weight of that preference."""
    terms = pod["spec"]["affinity"]["nodeAffinity"].get(PREFERRED) or []
    out = {}
    for t in terms:
        (e,) = t["preference"]["matchExpressions"]
        assert e["operator"] == "NotIn"
        out[e["key"], e["values"][0]] = t["weight"]
    return out


def required_keys(pod: dict[str, Any]) -> set[str]:
    terms = pod["spec"]["affinity"]["nodeAffinity"][REQUIRED]["nodeSelectorTerms"]
    return {e["key"] for t in terms for e in t["matchExpressions"]}


def again(out: Any, **spec: Any) -> Any:
    """The job as the next pass reads it (status through JSON, as the API server keeps it)."""
    return job(out.status.model_dump(mode="json", exclude_none=True), **spec)


def test_the_zone_and_the_first_pool_label_present_are_where_an_attempt_runs() -> None:
    where, problems = zones.placement(
        "n1",
        in_zone(
            "eu-west-1a",
            **{"karpenter.sh/nodepool": "spot-gpu", "eks.amazonaws.com/nodegroup": "ng-1"},
        ),
        3,
    )
    assert problems == []
    assert (where.attempt, where.node, where.zone) == (3, "n1", "eu-west-1a")
    # the documented order: GKE, EKS, Karpenter, AKS; EKS's comes before Karpenter's
    assert (where.poolLabel, where.pool) == ("eks.amazonaws.com/nodegroup", "ng-1")
    bare, _ = zones.placement("n2", node("n2"), 1)
    assert (bare.zone, bare.poolLabel, bare.pool) == (None, None, None)


@pytest.mark.parametrize(
    "value",
    [
        "a" * 64,
        "zone-a\nInjected: yes",
        "-leading-dash",
        "zöne",
        "has space",
        12,
        ["local-a"],
        {"x": "y"},
        "x" * 100_000,
    ],
)
def test_a_hostile_label_value_is_not_used_and_a_warning_names_node_label_and_fix(
    value: Any,
) -> None:
    hostile = node("spot-1", **{zones.ZONE_LABEL: value, "karpenter.sh/nodepool": "p1"})
    out = first_seen_on(hostile)
    where = out.status.placement
    assert where is not None and where.zone is None  # the bad value is not kept
    assert (where.poolLabel, where.pool) == ("karpenter.sh/nodepool", "p1")  # the good one is
    (warning,) = [e for e in out.events if e.reason == "NodeLabelIgnored"]
    assert warning.type == "Warning"
    assert "node spot-1" in warning.message and zones.ZONE_LABEL in warning.message
    assert "fix the node's label" in warning.message and len(warning.message) < 400
    assert "\n" not in warning.message.replace("\\n", "")
    # and the status stays what the CRD accepts
    assert len(out.status.model_dump_json()) < 4000


def test_the_place_is_recorded_once_while_the_pod_runs_and_avoided_after_its_node_is_gone() -> None:
    seen = first_seen_on(in_zone("zone-a", **{"cloud.google.com/gke-nodepool": "spot-pool"}))
    where = seen.status.placement
    assert where == Placement(
        attempt=1,
        node="spot-1",
        zone="zone-a",
        poolLabel="cloud.google.com/gke-nodepool",
        pool="spot-pool",
    )
    # the node is gone when the end is seen: the place recorded while it ran is what counts
    later = NOW + timedelta(minutes=5)
    end = plan(again(seen), [ended_pod(1, "Failed", 143, disrupted=True)], {}, False, later)
    assert end.status.preemptions == 1
    (avoided,) = end.status.avoiding
    assert (avoided.zone, avoided.pool, avoided.attempt) == ("zone-a", "spot-pool", 1)
    assert when(avoided.until) == later + timedelta(seconds=1800)  # the default window
    nxt = plan(again(end), [], {}, False, later + timedelta(seconds=2))
    assert nxt.create is not None and nxt.create["metadata"]["name"] == "a-2"
    assert avoided_values(nxt.create) == {
        (zones.ZONE_LABEL, "zone-a"): 100,
        ("cloud.google.com/gke-nodepool", "spot-pool"): 100,
    }
    (told,) = [e for e in nxt.events if e.reason == "AvoidingZone"]
    assert "a-2" in told.message and "zone zone-a" in told.message
    assert "spot-pool" in told.message and avoided.until in told.message
    assert "not a requirement" in told.message


def test_a_failure_is_not_a_reclaim() -> None:
    seen = first_seen_on(in_zone("zone-a"))
    end = plan(again(seen), [ended_pod(1, "Failed", 1)], {}, False, NOW)
    assert end.status.failures == 1 and not end.status.avoiding


def reclaimed(*places: tuple[str, int], seconds: int = 1800) -> list[AvoidedPlace]:
    """The avoid list after preemptions in ``zone`` at NOW + ``minute`` minutes."""
    avoiding: list[AvoidedPlace] | None = None
    for i, (zone, minute) in enumerate(places, 1):
        where = Placement(attempt=i, node=f"n{i}", zone=zone)
        avoiding = zones.reclaim(avoiding, where, NOW + timedelta(minutes=minute), seconds)
    return avoiding or []


def test_which_places_are_avoided_at_time_t_and_how_much() -> None:
    avoiding = reclaimed(("a", 0), ("b", 10))
    at = NOW + timedelta(minutes=15)
    weights = {
        t["preference"]["matchExpressions"][0]["values"][0]: t["weight"]
        for t in zones.preferred_terms(avoiding, at)
    }
    # both avoided; the newer reclaim weighs more (share of its window still ahead)
    assert weights == {"a": 50, "b": 84}
    assert [a.zone for a in zones.active(avoiding, NOW + timedelta(minutes=31))] == ["b"]
    assert zones.preferred_terms(avoiding, NOW + timedelta(minutes=41)) == []
    # the same zone reclaimed again: one entry, its window renewed, newest last
    again_a = reclaimed(("a", 0), ("b", 10), ("a", 20))
    assert [(x.zone, x.attempt) for x in again_a] == [("b", 2), ("a", 3)]
    assert when(again_a[-1].until) == NOW + timedelta(minutes=50)
    # a window that ended is dropped when the next place is added
    assert [x.zone for x in reclaimed(("a", 0), ("b", 31))] == ["b"]


def test_the_avoid_list_is_bounded() -> None:
    many = reclaimed(*[(f"z{i}", i) for i in range(40)])
    assert len(many) == 16 and many[-1].zone == "z39"


def test_the_event_keeps_the_note_and_the_newest_places_within_an_events_1024_characters() -> None:
    """kube.py cuts an Event's message at 1024 characters: with 16 long places the note and
    the newest place still come through, and the rest is counted, not cut mid-way."""
    avoiding: list[AvoidedPlace] | None = None
    for i in range(16):
        where = Placement(
            attempt=i + 1,
            node=f"node-{i:02d}-" + "x" * 100,
            zone=f"zone-{i:02d}-" + "z" * 50,
            poolLabel="karpenter.sh/nodepool",
            pool=f"pool-{i:02d}-" + "p" * 50,
        )
        avoiding = zones.reclaim(avoiding, where, NOW + timedelta(seconds=i), 1800)
    st = {
        "attempt": 17,
        "phase": "Restarting",
        "avoiding": [a.model_dump() for a in avoiding or []],
    }
    out = plan(job(st), [], {}, False, NOW + timedelta(minutes=1))
    (told,) = [e for e in out.events if e.reason == "AvoidingZone"]
    assert len(told.message) <= 1024  # nothing lost to the cut
    assert told.message.startswith("a-17 prefers nodes outside the places reclaimed lately")
    assert "a preference, not a requirement" in told.message
    assert "zone zone-15-" in told.message  # the newest
    assert "zone zone-00-" not in told.message  # the oldest: counted
    shown = told.message.count("preempted on node")
    assert told.message.endswith(f"; and {16 - shown} more (status.avoiding)")
    assert told.message.index("zone-15-") < told.message.index("zone-14-")


def test_when_every_zone_was_reclaimed_the_pod_still_only_prefers() -> None:
    st = {
        "attempt": 3,
        "phase": "Restarting",
        "avoiding": [a.model_dump() for a in reclaimed(("a", 0), ("b", 5), ("c", 10))],
    }
    out = plan(job(st), [], {}, False, NOW + timedelta(minutes=11))
    pod = out.create
    assert pod is not None
    weights = avoided_values(pod)
    # the zone reclaimed longest ago is the least avoided: the scheduler leans there
    assert weights[zones.ZONE_LABEL, "a"] < weights[zones.ZONE_LABEL, "b"]
    assert weights[zones.ZONE_LABEL, "b"] < weights[zones.ZONE_LABEL, "c"]
    # nothing about zones became a requirement: only the spot labels are required
    assert zones.ZONE_LABEL not in required_keys(pod)
    assert "karpenter.sh/capacity-type" in required_keys(pod)


def test_avoid_reclaimed_seconds_sets_the_window_and_zero_turns_it_off() -> None:
    seen = first_seen_on(in_zone("zone-a"))
    for seconds, expect in ((60, NOW + timedelta(seconds=60)), (0, None)):
        spot = {"avoidReclaimedSeconds": seconds, "backoffSeconds": 0}
        end = plan(
            again(seen, spot=spot), [ended_pod(1, "Failed", 143, disrupted=True)], {}, False, NOW
        )
        avoiding = end.status.avoiding or []
        assert [when(a.until) for a in avoiding] == ([expect] if expect else [])
        assert end.create is not None  # backoff 0: the same pass creates attempt 2
        assert avoided_values(end.create) == ({(zones.ZONE_LABEL, "zone-a"): 100} if expect else {})
        assert any(e.reason == "AvoidingZone" for e in end.events) == bool(expect)
    # the 60 s window has run out a minute later: no preference, and the status forgets it
    short = plan(
        again(seen, spot={"avoidReclaimedSeconds": 60}),
        [ended_pod(1, "Failed", 143, disrupted=True)],
        {},
        False,
        NOW,
    )
    later = plan(
        again(short, spot={"avoidReclaimedSeconds": 60}), [], {}, False, NOW + timedelta(seconds=61)
    )
    assert later.create is not None and avoided_values(later.create) == {}
    assert not later.status.avoiding


def test_the_crd_and_the_model_refuse_a_negative_or_huge_window() -> None:
    spot = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["spot"]["properties"]["avoidReclaimedSeconds"]
    assert (spot["type"], spot["minimum"], spot["maximum"], spot["default"]) == (
        "integer",
        0,
        604800,
        1800,
    )
    base = job().spec.model_dump()
    for bad in (-1, 604801, "soon"):
        with pytest.raises(ValidationError, match="avoidReclaimedSeconds"):
            JobSpec.model_validate({**base, "spot": {"avoidReclaimedSeconds": bad}})


def test_the_users_affinity_is_merged_never_dropped() -> None:
    own = {
        "nodeAffinity": {
            REQUIRED: {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "node.kubernetes.io/instance-type",
                                "operator": "In",
                                "values": ["g5.xlarge"],
                            }
                        ]
                    },
                    {
                        "matchFields": [
                            {"key": "metadata.name", "operator": "In", "values": ["big-1"]}
                        ]
                    },
                ]
            },
            PREFERRED: [
                {
                    "weight": 7,
                    "preference": {
                        "matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]
                    },
                }
            ],
        },
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []},
    }
    template = {
        "spec": {
            "affinity": copy.deepcopy(own),
            "containers": [{"name": "trainer", "image": "img", "command": ["python", "train.py"]}],
        }
    }
    avoiding = reclaimed(("a", 0))
    j = job(
        {"attempt": 2, "phase": "Restarting", "avoiding": [a.model_dump() for a in avoiding]},
        template=template,
    )
    pod = plan(j, [], {}, False, NOW + timedelta(minutes=1)).create
    assert pod is not None
    affinity = pod["spec"]["affinity"]
    assert affinity["podAntiAffinity"] == own["podAntiAffinity"]
    prefer = affinity["nodeAffinity"][PREFERRED]
    assert prefer[0] == own["nodeAffinity"][PREFERRED][0]  # theirs first, then ours
    assert [t["preference"]["matchExpressions"] for t in prefer[1:]] == [
        [{"key": zones.ZONE_LABEL, "operator": "NotIn", "values": ["a"]}]
    ]
    terms = affinity["nodeAffinity"][REQUIRED]["nodeSelectorTerms"]
    # each of their terms ANDed with each spot term: a node must satisfy one of each
    assert len(terms) == 2 * 5
    for t in terms:
        keys = {e["key"] for e in t.get("matchExpressions", [])}
        assert keys & {
            "karpenter.sh/capacity-type",
            "cloud.google.com/gke-spot",
            "cloud.google.com/gke-preemptible",
            "kubernetes.azure.com/scalesetpriority",
            "eks.amazonaws.com/capacityType",
        }
        assert "node.kubernetes.io/instance-type" in keys or t.get("matchFields")
    # the on-demand attempt keeps theirs too
    od = desired_pod(replace(j), 3, on_demand=True, gpus_available=False)
    od_terms = od["spec"]["affinity"]["nodeAffinity"][REQUIRED]["nodeSelectorTerms"]
    assert len(od_terms) == 2 and all(
        any(e["operator"] == "NotIn" for e in t["matchExpressions"]) for t in od_terms
    )
    assert spec_unchanged(j, own)


def spec_unchanged(j: Any, own: dict[str, Any]) -> bool:
    """Building the pod never edits the job's own template."""
    return bool(j.spec.template["spec"]["affinity"] == own)


def test_the_warm_started_attempt_prefers_elsewhere_too() -> None:
    case = load("eviction-api-notice")
    labels = case["node"]["metadata"]["labels"]
    labels.update({zones.ZONE_LABEL: "us-east-1c", "karpenter.sh/nodepool": "spot"})
    out = plan(digits(), [case["pod"]], {"spot-7": case["node"]}, False, when(case["now"]))
    assert out.create is not None and out.create["metadata"]["name"] == "digits-4"
    # the place was read in the same pass that saw the notice, before the new pod was made
    assert avoided_values(out.create) == {
        (zones.ZONE_LABEL, "us-east-1c"): 100,
        ("karpenter.sh/nodepool", "spot"): 100,
    }
    reasons = [e.reason for e in out.events]
    assert reasons.index("WarmStart") < reasons.index("AvoidingZone")
    assert [(a.attempt, a.node) for a in out.status.avoiding] == [(3, "spot-7")]
