"""A node that stops answering, on kind's real control plane (README, "The operator": a platform
ending "... unreachable or gone; a pod lost with its node" is a preemption): the spot worker's
container killed with its Node left in place (hack/kind/preempt --unreachable: a hung machine,
a network partition). Nothing reports the pod's end: the node lifecycle controller marks the
Node Ready=Unknown after its grace period and taints it node.kubernetes.io/unreachable, and the
taint manager deletes the pod when its toleration ends (10 s here, set in the job's template;
300 s by default; DisruptionTarget DeletionByTaintManager). That deletion is the platform's sign:
the operator counts a preemption and starts the next attempt at once (the warm start), while the
old trainer, which may still run behind a partition, "saves until" its grace deadline (20 s
here); the new sidecar restores only after that deadline, since no final save is reported.

The example digits job with `spot.fallbackToOnDemandAfter: 1` (attempt 2 goes to the on-demand
worker while the spot worker is silent), the toleration and the grace period edited in. Asserted:
a preemption, not a failure, naming the taint manager's deletion and the old attempt's save
deadline, no final save; attempt 2 on the on-demand worker restores the newest checkpoint
committed in S3 before the node went silent; when the machine answers again
(hack/kind/add-node, the Node kept) its kubelet ends the old pod and the pod object goes away.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.kind.jobs import ON_DEMAND_WORKER, SPOT_WORKER, Job, StartDigits, committed_steps, hack
from tests.kind.kindenv import wait_for

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800)]

EPOCHS = 5000  # never done here: the test ends once attempt 2 has restored
TOLERATION_SECONDS, GRACE = 10, 20


def tolerate_unreachable_briefly(job: dict[str, Any]) -> None:
    job["spec"]["terminationGracePeriodSeconds"] = GRACE
    job["spec"]["template"]["spec"]["tolerations"] = [
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": TOLERATION_SECONDS,
        }
    ]


@pytest.fixture
def digits(start_digits: StartDigits) -> Job:
    spot = {"fallbackToOnDemandAfter": 1}
    return start_digits("unreachable-kind", EPOCHS, spot, edit=tolerate_unreachable_briefly)


@pytest.fixture
def answers_again(digits: Job) -> Iterator[None]:
    """A test that failed before its add-node still brings the silent worker back before its
    namespace is deleted: a pod bound to a silent node never finishes deleting."""
    yield
    digits.cluster.restore_workers()


def ready(job: Job, node: str) -> str:
    found = json.loads(job.cluster.kubectl("get", "node", node, "-o", "json"))
    (cond,) = [c for c in found["status"]["conditions"] if c["type"] == "Ready"]
    return str(cond["status"])


def test_a_silent_node_loses_its_pod_as_a_preemption_and_the_job_resumes_elsewhere(
    digits: Job, answers_again: None
) -> None:
    wait_for("the status to name a checkpoint", digits.last_step, 300)
    silent = hack(digits.cluster, "preempt", SPOT_WORKER, "--unreachable")
    assert f"node {SPOT_WORKER} stopped answering (container killed, Node kept)" in silent, silent
    newest = max(committed_steps(digits.s3, digits.prefix))  # nothing commits after the kill
    wait_for("the Node to turn Unknown", lambda: ready(digits, SPOT_WORKER) == "Unknown", 300)

    lost = wait_for(
        "the lost attempt to be counted",
        lambda: st if (st := digits.status()).get("preemptions") == 1 else None,
        300,
    )
    assert (lost["failures"], lost["attempt"]) == (0, 2), lost
    assert not lost["lastCheckpoint"].get("finalSaved"), lost
    (preempted,) = digits.events("Preempted")  # the condition's text, kept once attempt 2 runs
    assert "(DisruptionTarget DeletionByTaintManager; it saves until " in preempted, preempted
    assert "(no final save reported)" in preempted, preempted

    node = digits.restored_in("digits-2", newest)
    assert node == ON_DEMAND_WORKER, "attempt 2 falls back to on-demand capacity"

    # the machine answers again: its kubelet ends the lost pod, whose object then goes away
    hack(digits.cluster, "add-node", SPOT_WORKER)
    wait_for(
        "digits-1 to be gone",
        lambda: "pod/digits-1" not in digits.k("get", "pods", "-o", "name").split(),
        300,
    )
    status = digits.status()
    assert (status["preemptions"], status["failures"], status["attempt"]) == (1, 0, 2), status
