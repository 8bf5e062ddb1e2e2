"""A spot node taken back the way GKE does it, on kind's real kubelets: no taint, no eviction,
the machine is powered off and the kubelet's graceful node shutdown (shutdownGracePeriod 30 s,
15 s of it for system-critical pods: hack/kind/kindconfig.py) sends the trainer SIGTERM and
ends its pod itself (DisruptionTarget TerminationByKubelet; phase Succeeded when the trainer
exits 0 after its save, Failed otherwise), then the node halts
and its Node is deleted (`hack/kind/preempt NODE --shutdown`).

What a user sees (README "The operator": a graceful node shutdown is a preemption, not a
failure; "Grace periods on real platforms": the trainer that saves at once is inside GKE's
15 s): 1 preemption, 0 failures, the final save reported, and the next attempt restores that
step on the capacity that comes back.
"""

from __future__ import annotations

import re

import pytest

from tests.kind.jobs import SPOT_WORKER, STEPS_PER_EPOCH, Job, StartDigits, hack
from tests.kind.kindenv import KindCluster, wait_for

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800)]

EPOCHS = 40


@pytest.fixture
def digits(start_digits: StartDigits) -> Job:
    return start_digits("shutdown-kind", EPOCHS)


def test_a_graceful_node_shutdown_is_a_preemption_and_the_sigterm_save_is_restored(
    digits: Job, kind_cluster: KindCluster
) -> None:
    said = hack(kind_cluster, "preempt", SPOT_WORKER, "--shutdown")
    assert f"node {SPOT_WORKER} is gone (container halted, Node deleted)" in said, said

    counted = wait_for(
        "the shutdown to be counted",
        lambda: (st := digits.status()).get("preemptions") == 1 and st,
        300,
    )
    assert counted["failures"] == 0, counted
    # the kubelet publishes DisruptionTarget only with the final phase (status_manager's
    # mergePodStatus), so the operator sees the pod ended, never a warm-start notice
    (preempted,) = [c["message"] for c in counted["conditions"] if c["type"] == "Preempted"]
    assert "TerminationByKubelet" in preempted, preempted  # the kubelet's own sign on the pod
    found = re.search(r"last checkpoint step (\d+) \(final save made it\)", preempted)
    assert found, preempted
    saved = int(found.group(1))
    assert counted["lastCheckpoint"]["finalSaved"] is True, counted
    assert counted["lastCheckpoint"]["step"] == saved, counted

    # the cloud brings capacity back. (Were digits-2 bound to the worker in the instant before
    # its kubelet stopped, that kubelet would refuse it, NodeShutdown: a second preemption.)
    hack(kind_cluster, "add-node", SPOT_WORKER)
    wait_for("digits-2 to run", lambda: digits.running_node("digits-2"), 900)
    restored = "spotrun: restored step"
    log = wait_for("digits-2 to restore", lambda: digits.log_with("digits-2", restored), 300)
    assert f"spotrun: restored step {saved} " in log, log[-2000:]

    status = digits.finished()
    assert status["phase"] == "Succeeded", status
    assert (status["preemptions"], status["failures"], status["attempt"]) == (1, 0, 2), status
    assert status["lastCheckpoint"]["step"] == EPOCHS * STEPS_PER_EPOCH
