"""After a preemption the next attempt prefers nodes outside the reclaimed zone and node pool
(spec.spot.avoidReclaimedSeconds). Where the job's own required terms pin that very pool (spot
capacity named as `karpenter.sh/nodepool In [p]`), no node it may use could meet "NotIn [p]":
the preference is left off. Karpenter ANDs preferences with requirements in its scheduling
simulation, and In [p] with NotIn [p] reads there as "no karpenter.sh/nodepool label", which
every node outside its pools has: seen on kind (hack/TIERS.md, "Stop 35"), it nominated such a
node for the pending attempt, launched nothing, and removed the pool node the attempt ran on."""

from __future__ import annotations

from typing import Any

import pytest

from spotrun_operator import affinity
from spotrun_operator.builders import desired_pod
from tests.unit.operator.test_decisions import job

pytestmark = pytest.mark.unit

POOL = "karpenter.sh/nodepool"
ZONE = "topology.kubernetes.io/zone"


def pinned(key: str, *values: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": key, "operator": "In", "values": list(values)}]}


def avoid(key: str, *values: str) -> dict[str, Any]:
    expressions = [{"key": key, "operator": "NotIn", "values": list(values)}]
    return {"weight": 100, "preference": {"matchExpressions": expressions}}


def preferred_of(pod: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = pod["spec"]["affinity"]["nodeAffinity"].get(
        affinity.PREFERRED, []
    )
    return found


def test_a_spot_pool_pinned_by_the_job_is_not_avoided_but_its_zone_still_is() -> None:
    spot = {"nodeSelectorTerms": [pinned(POOL, "gpu-spot")]}
    prefer = [avoid(ZONE, "us-east-1a"), avoid(POOL, "gpu-spot")]
    pod = desired_pod(job(spot=spot), 2, on_demand=False, gpus_available=False, prefer=prefer)
    assert preferred_of(pod) == [avoid(ZONE, "us-east-1a")]


def test_a_pool_one_of_several_allowed_is_still_avoided() -> None:
    spot = {"nodeSelectorTerms": [pinned(POOL, "gpu-spot", "gpu-spot-b")]}
    prefer = [avoid(POOL, "gpu-spot")]
    pod = desired_pod(job(spot=spot), 2, on_demand=False, gpus_available=False, prefer=prefer)
    assert preferred_of(pod) == prefer  # gpu-spot-b meets it


def test_a_preference_is_dropped_only_when_every_required_term_excludes_it() -> None:
    terms = [pinned(POOL, "a"), pinned(POOL, "b")]
    assert not affinity.never_met(avoid(POOL, "a"), terms)  # the nodes of b meet it
    assert affinity.never_met(avoid(POOL, "a", "b"), terms)
    assert not affinity.never_met(avoid(POOL, "a"), [])  # no requirement: any node may
    assert not affinity.never_met(avoid(ZONE, "a"), [pinned(POOL, "a")])  # another key


def test_the_template_s_own_preferences_are_kept_as_written() -> None:
    own = avoid(POOL, "gpu-spot")
    template = {
        "spec": {
            "containers": [{"name": "trainer", "image": "img", "command": ["python"]}],
            "affinity": {"nodeAffinity": {affinity.PREFERRED: [own]}},
        }
    }
    spot = {"nodeSelectorTerms": [pinned(POOL, "gpu-spot")]}
    pod = desired_pod(job(template=template, spot=spot), 1, on_demand=False, gpus_available=False)
    assert preferred_of(pod) == [own]
