"""Fallback to on-demand on kind's real kubelets: the example with `spot.fallbackToOnDemandAfter:
1` is interrupted with notice on the spot worker and, with no spot capacity back, its next
attempt runs elsewhere, on the on-demand worker, from the step saved on SIGTERM.

What a user sees: the operator deletes the pod when the node is tainted for interruption
(InterruptionNotice, before any eviction), says FallbackToOnDemand, places attempt 2 on an
on-demand node, which pulls the trainer image from the registry itself, and the job Succeeds
with 1 preemption and 0 steps lost.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster.node import nodes
from tests.kind.jobs import (
    ON_DEMAND_WORKER,
    SPOT_WORKER,
    STEPS_PER_EPOCH,
    Job,
    hack,
    started,
)
from tests.kind.kindenv import KindCluster, wait_for

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800)]

EPOCHS = 60
CAPACITY_TYPE = "karpenter.sh/capacity-type"


@pytest.fixture
def fallback(
    kind_cluster: KindCluster,
    pushed: dict[str, str],
    kind_s3: dict[str, str],
    operator: None,
    tmp_path: Path,
) -> Iterator[Job]:
    spot = {"fallbackToOnDemandAfter": 1}
    with started(
        kind_cluster, kind_s3, pushed["trainer"], "fallback-kind", tmp_path, EPOCHS, spot
    ) as d:
        try:
            yield d
        finally:  # the spot capacity comes back for the tests after this one
            if SPOT_WORKER not in kind_cluster.kubectl("get", "nodes", "-o", "name"):
                hack(kind_cluster, "add-node", SPOT_WORKER)


def test_after_a_preemption_the_next_attempt_runs_on_demand_elsewhere_losing_no_step(
    fallback: Job, kind_cluster: KindCluster
) -> None:
    # a notice long enough that the operator, not the eviction, ends the pod
    preempt = hack(kind_cluster, "preempt", SPOT_WORKER, "--notice", "20")
    assert f"node {SPOT_WORKER} is gone" in preempt, preempt
    node = wait_for("digits-2 to run", lambda: fallback.running_node("digits-2"), 600)
    assert node == ON_DEMAND_WORKER
    labels = json.loads(kind_cluster.kubectl("get", "node", node, "-o", "json"))["metadata"][
        "labels"
    ]
    assert labels[CAPACITY_TYPE] == nodes.ON_DEMAND

    status = fallback.finished()
    assert status["phase"] == "Succeeded", status
    assert (status["preemptions"], status["failures"], status["attempt"]) == (1, 0, 2), status
    assert status["lastCheckpoint"]["step"] == EPOCHS * STEPS_PER_EPOCH
    assert len(fallback.events("InterruptionNotice")) == 1
    (fell_back,) = fallback.events("FallbackToOnDemand")
    ended = fallback.events("PreemptedAttemptEnded")
    assert len(ended) == 1 and "ended: its final save made it (step " in ended[0], ended
    saved = int(ended[0].rsplit("(step ", 1)[1].rstrip(")"))
    log = fallback.trainer_log("digits-2")
    assert f"spotrun: restored step {saved} " in log, (fell_back, log[-2000:])
