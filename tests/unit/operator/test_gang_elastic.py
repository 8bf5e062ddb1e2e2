"""spec.nodes.min < max: an attempt whose pods cannot all be scheduled runs on fewer nodes (at
least min), and the next restart asks for max again (grows back when capacity returns)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from spotrun_operator import gang, gangplan, refusals
from spotrun_operator.decisions import plan
from tests.unit.operator.test_gang import (
    NODES,
    NOW,
    created,
    deleted,
    ended,
    env_of,
    job,
    node,
    running,
)

pytestmark = pytest.mark.unit

ELASTIC = {"nodes": {"min": 1, "max": 2, "shrinkAfterSeconds": 30}, "procsPerNode": 2}


def stuck(pod: dict[str, Any], seconds_ago: float) -> dict[str, Any]:
    """``pod`` unschedulable (no node has room) since ``seconds_ago``."""
    pod = json.loads(json.dumps(pod))
    at = (NOW - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")
    pod["metadata"]["creationTimestamp"] = at
    pod["status"] = {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False",
                        "message": "0/3 nodes are available: 1 node(s) didn't match pod "
                                   "anti-affinity rules"}],
    }
    return pod


def half_placed(seconds_ago: float, **spec: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Attempt 1 of a gang: rank 0 runs on n0, rank 1 unschedulable for ``seconds_ago``."""
    first = plan(job(**spec), [], {}, False, NOW)
    zero, one = created(first)
    return first.status.model_dump(), [running(zero, "n0"), stuck(one, seconds_ago)]


def test_the_size_decisions():
    assert gangplan.fewer_nodes(1, 2, 1) == 1
    assert gangplan.fewer_nodes(2, 4, 3) == 3
    assert gangplan.fewer_nodes(2, 2, 1) is None  # min == max: never smaller
    assert gangplan.fewer_nodes(2, 3, 1) is None  # fewer than min: no smaller gang
    assert gangplan.fewer_nodes(1, 2, 2) is None
    spec = job(**ELASTIC).spec
    assert gang.attempt_nodes(spec, None) == 2 and gang.attempt_nodes(spec, 1) == 1
    assert gang.attempt_nodes(spec, 5) == 2  # nodes.max lowered meanwhile
    assert gangplan.first_ended({0: NOW, 1: NOW - timedelta(seconds=1), 2: None}) == 1
    assert gangplan.first_ended({0: None, 1: None}) == 0


def test_a_gang_half_placed_waits_shrink_after_seconds_then_runs_on_the_nodes_it_has():
    status, pods = half_placed(10, **ELASTIC)
    wait = plan(job(status, **ELASTIC), pods, NODES, False, NOW)
    assert wait.status.attempt == 1 and wait.delete == [] and wait.status.gangNodes is None
    assert wait.requeue_after is not None and 19 <= wait.requeue_after <= 20

    status, pods = half_placed(31, **ELASTIC)
    out = plan(job(status, **ELASTIC), pods, NODES, False, NOW)
    st = out.status
    assert (st.attempt, st.gangNodes, st.preemptions, st.failures, st.onDemand) == (
        2, 1, 0, 0, False)
    assert sorted(out.delete) == ["a-1-0", "a-1-1"]
    (says,) = [m for _, r, m in out.events if r == "GangShrunk"]
    assert "only 1 of 2 pods could be scheduled" in says and "a-1-1: 0/3 nodes" in says
    assert "attempt 2 runs on 1 node(s)" in says and "world size 2" in says
    assert st.gangHistory is not None and st.gangHistory[0].outcome == "Shrunk"

    # the old pods are over: attempt 2 is a gang of 1 pod (2 processes), on spot
    nxt = plan(job(st.model_dump(), **ELASTIC), [], {}, False, NOW)
    assert [p["metadata"]["name"] for p in created(nxt)] == ["a-2-0"]
    env = env_of(created(nxt)[0]["spec"]["containers"][0])
    assert (env["PET_NNODES"], env["PET_NPROC_PER_NODE"], env["MASTER_ADDR"]) == (
        "1", "2", "127.0.0.1")
    assert env["SPOTRUN_NNODES"] == "1" and env["SPOTRUN_NPROC_PER_NODE"] == "2"
    g = nxt.status.gang
    assert g is not None and (g.nodesWanted, g.worldSize, g.nodes) == (1, 2, "0/1")
    assert nxt.status.gangNodes is None and nxt.status.gangHistory is not None
    assert nxt.status.gangHistory[-1].why == (
        "1 of spec.nodes.max 2: only 1 pod(s) of attempt 1 could be scheduled")
    assert any(r == "Gang" and "world size 2" in m and "1 of spec.nodes.max 2" in m
               for _, r, m in nxt.events)

    # it runs alone; then it is preempted: attempt 3 asks for 2 nodes again (grows back)
    one = running(created(nxt)[0], "n0")
    run = plan(job(nxt.status.model_dump(), **ELASTIC), [one], NODES, False, NOW)
    assert run.status.phase == "Running" and run.status.gang is not None
    assert run.status.gang.nodes == "1/1"
    hit = plan(job(run.status.model_dump(), **ELASTIC), [deleted(one, disrupted=True)], NODES,
               False, NOW)
    done = [ended(deleted(one, disrupted=True), "Failed", 143, finished=NOW, step=40)]
    after = plan(job(hit.status.model_dump(), **ELASTIC), done, NODES, False, NOW)
    assert (after.status.attempt, after.status.preemptions) == (3, 1)
    later = plan(job(after.status.model_dump(), **ELASTIC), [], {}, False,
                 NOW + timedelta(seconds=5))
    assert [p["metadata"]["name"] for p in created(later)] == ["a-3-0", "a-3-1"]
    history = later.status.gangHistory
    assert history is not None and [(h.attempt, h.nodes, h.worldSize) for h in history] == [
        (1, 2, 4), (2, 1, 2), (3, 2, 4)]
    assert history[-1].why == "spec.nodes.max 2: grown back from 1 (attempt 2)"


def test_without_a_smaller_min_a_half_placed_gang_keeps_waiting_for_all_its_nodes():
    fixed = {"nodes": {"max": 2, "shrinkAfterSeconds": 30}, "procsPerNode": 2}
    status, pods = half_placed(600, **fixed)
    out = plan(job(status, **fixed), pods, NODES, False, NOW)
    assert out.status.attempt == 1 and out.delete == [] and out.status.gangNodes is None


def test_fewer_pods_placed_than_min_is_the_pending_timeout_to_on_demand_not_a_shrink():
    spec = {"nodes": {"min": 2, "max": 3, "shrinkAfterSeconds": 5}, "procsPerNode": 1,
            "spot": {"pendingTimeoutSeconds": 60}}
    first = plan(job(**spec), [], {}, False, NOW)
    zero, one, two = created(first)
    pods = [running(zero, "n0"), stuck(one, 61), stuck(two, 61)]
    out = plan(job(first.status.model_dump(), **spec), pods, NODES, False, NOW)
    st = out.status
    assert st.onDemand and st.attempt == 2 and st.gangNodes is None
    assert not [r for _, r, _ in out.events if r == "GangShrunk"]


def test_a_placed_pod_on_a_node_being_reclaimed_is_a_preemption_not_a_shrink():
    """Rank 0 runs on a node tainted for interruption while rank 1 cannot be scheduled past
    shrinkAfterSeconds: the attempt was preempted (counted, its zone avoided), not shrunk onto
    a node that is going away."""
    status, pods = half_placed(31, **ELASTIC)
    taint = {"key": "aws-node-termination-handler/spot-itn", "effect": "NoSchedule"}
    tainted = {**NODES, "n0": node("n0", taints=[taint])}
    out = plan(job(status, **ELASTIC), pods, tainted, False, NOW)
    assert not [r for _, r, _ in out.events if r == "GangShrunk"]
    assert out.status.gangNodes is None
    g = out.status.gang
    assert g is not None and g.ending is not None and g.ending.outcome == "Preempted"
    assert "node n0 tainted" in g.ending.why


def test_a_shrunk_gang_whose_pods_are_refused_keeps_its_size_for_the_next_try():
    """The API refuses attempt 2's pod (a quota, say): the retry asks for the 1 node the
    shrink found, not nodes.max again (which would wait shrinkAfterSeconds once more)."""
    status, pods = half_placed(31, **ELASTIC)
    shrunk = plan(job(status, **ELASTIC), pods, NODES, False, NOW).status
    nxt = plan(job(shrunk.model_dump(), **ELASTIC), [], {}, False, NOW)
    assert [p["metadata"]["name"] for p in created(nxt)] == ["a-2-0"]
    refusals.refused(nxt, job(shrunk.model_dump(), **ELASTIC), 403,
                     {"message": "exceeded quota"}, NOW)
    assert nxt.create is None and nxt.status.gangNodes == 1
    retry = plan(job(nxt.status.model_dump(), **ELASTIC), [], {}, False,
                 NOW + timedelta(minutes=10))
    assert [p["metadata"]["name"] for p in created(retry)] == ["a-2-0"]
