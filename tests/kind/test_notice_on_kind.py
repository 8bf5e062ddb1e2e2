"""Using the whole notice on kind's real kubelets (README, "Using the whole notice"): the example
digits job opted in with SPOTRUN_SAVE_AT_ONCE=0 is interrupted with notice on the spot worker
(hack/kind/preempt: interruption taint, eviction with the job's 60 s grace period, the node
stopped once its pods have ended). The trainer keeps training after the kubelet's SIGTERM, saves
at the last safe step (the grace period less 1.5 x the save + upload it measured, less a 4 s
reserve: trainer/spotrun/notice.py), its sidecar makes that save durable in S3 before the pod
ends, and attempt 2, on the capacity that comes back, restores exactly that step: the steps
trained during the notice are kept, none lost.

Attempt 1's log is read with `kubectl logs -f` while it runs: once its node is gone the kubelet
that holds the log is gone with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kind.jobs import SPOT_WORKER, Job, StartDigits, committed_steps, hack
from tests.kind.kindenv import wait_for

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800)]

EPOCHS = 5000  # never done here: the test ends once attempt 2 has restored (~20 s per 100)
GRACE = 60  # manifests/examples/job.yaml's terminationGracePeriodSeconds
# checkpointer.py's line at the save: "SIGTERM 51.2 s ago: trained 9000 more steps during the
# notice; saving step 12345, deadline in 8.8 s"
SAVED_LATE = re.compile(
    r"spotrun: SIGTERM ([0-9.]+) s ago: trained (\d+) more steps during the notice; "
    r"saving step (\d+), deadline in (-?[0-9.]+) s"
)


@pytest.fixture
def digits(start_digits: StartDigits) -> Job:
    return start_digits("notice-kind", EPOCHS, save_at_once=False)


@pytest.fixture
def followed(digits: Job, tmp_path: Path) -> Iterator[Path]:
    """digits-1's trainer log, followed into a file until the container ends."""
    with digits.followed("digits-1", "trainer", tmp_path / "digits-1.log") as path:
        yield path


def test_opted_in_the_trainer_trains_through_the_notice_and_the_next_attempt_loses_nothing(
    digits: Job, followed: Path
) -> None:
    # the plan needs a save + upload measured on this run: two periodic checkpoints durable
    wait_for(
        "two periodic checkpoints in S3",
        lambda: len(committed_steps(digits.s3, digits.prefix)) >= 2,
        300,
    )

    preempt = hack(digits.cluster, "preempt", SPOT_WORKER, "--notice", "5")
    assert f"node {SPOT_WORKER} is gone (container stopped, Node deleted)" in preempt, preempt
    log = followed.read_text()
    plan = [line for line in log.splitlines() if "spotrun: SIGTERM: deadline in" in line]
    assert len(plan) == 1 and "training on until" in plan[0], log[-3000:]
    found = SAVED_LATE.search(log)
    assert found, log[-3000:]
    after, trained, saved, left = (float(found[1]), int(found[2]), int(found[3]), float(found[4]))
    # it trained on for most of the notice and still saved before the grace period ended
    assert trained > 0 and GRACE / 2 < after < GRACE and left > 0, found[0]
    # saved locally, then the trainer exits; its sidecar makes the save durable in S3 (below)
    assert f"spotrun: step {saved} is durable; exiting 0" in log, log[-3000:]

    hack(digits.cluster, "add-node", SPOT_WORKER)  # the cloud brings capacity back
    ended = wait_for(
        "attempt 1's final save to be reported", lambda: digits.events("PreemptedAttemptEnded"), 300
    )
    assert len(ended) == 1 and f"its final save made it (step {saved})" in ended[0], ended
    digits.restored_in("digits-2", saved)  # every step trained during the notice: 0 lost
    status = digits.status()
    assert (status["preemptions"], status["failures"], status["attempt"]) == (1, 0, 2), status
