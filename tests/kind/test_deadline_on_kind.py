"""`spec.deadline` on kind's real kubelets (README.md, "Finishing by a deadline"): the example
with a deadline trains on the spot worker; the spot worker is preempted with notice and stays
gone, so the next attempt waits for spot. Once the job is behind the straight line from 0 to
totalSteps at the deadline, the operator moves it to the on-demand worker (a DeadlineCapacity
Event: "behind while spot is short"). When the spot worker is back and the slack covers two
restarts, the on-demand attempt gets SIGTERM, saves, and the next attempt runs on spot from that
save. The move is neither a preemption nor a failure; the job ends Succeeded before its
deadline, on both capacities, with its restarts measured on these kubelets
(status.deadline.restartReadings).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest

from spotrun_operator.builders import LABEL_CAPACITY
from tests.kind.jobs import (
    ON_DEMAND_WORKER,
    SPOT_WORKER,
    STEPS_PER_EPOCH,
    Job,
    StartDigits,
    hack,
)
from tests.kind.kindenv import KindCluster, wait_for

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800)]

EPOCHS = 400  # 18000 steps: ~100 s of training here (~5.5 ms a step)
TOTAL = EPOCHS * STEPS_PER_EPOCH
WITHIN = 450  # seconds from the job's start: room for steps twice as slow, and the restarts


def with_deadline(job: dict[str, Any]) -> None:
    job["spec"]["deadline"] = {"withinSeconds": WITHIN, "totalSteps": TOTAL, "restartSeconds": 15}


def told(digits: Job, words: str) -> list[str] | None:
    """The DeadlineCapacity Events saying WORDS, once there is one."""
    return [m for m in digits.events("DeadlineCapacity") if words in m] or None


def running_on(digits: Job, pod: str, node: str, capacity: str) -> None:
    assert wait_for(f"{pod} to run", lambda: digits.running_node(pod), 600) == node
    labels = digits.pod(pod)["metadata"]["labels"]
    assert labels[LABEL_CAPACITY] == capacity, labels


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@pytest.mark.usefixtures("trainer_on_workers")  # pulled before the job's clock starts
def test_a_deadline_job_goes_on_demand_when_behind_and_back_to_spot_when_ahead(
    start_digits: StartDigits, kind_cluster: KindCluster
) -> None:
    digits = start_digits("deadline-kind", EPOCHS, edit=with_deadline)
    measured = wait_for(
        "the step time to be measured",
        lambda: (digits.status().get("deadline") or {}).get("stepSeconds"),
        300,
    )
    assert 0 < measured < 1, measured  # the digits CNN: tens of ms a step
    hack(kind_cluster, "preempt", SPOT_WORKER, "--notice", "5")  # and no spot capacity back

    # attempt 2 waits for spot; once behind the line the operator moves the job to on-demand
    (moved,) = wait_for("the move to on-demand", lambda: told(digits, "runs on on-demand"), 600)
    assert "behind while spot is short" in moved and "digits-2 waits for spot" in moved, moved
    running_on(digits, "digits-3", ON_DEMAND_WORKER, "on-demand")
    st = digits.status()
    assert st["onDemand"] is True and st["deadline"]["capacity"] == "on-demand", st
    assert "behind while spot is short" in st["deadline"]["reason"], st["deadline"]
    assert when(st["deadline"]["projectedFinish"]) < when(st["deadline"]["finishBy"]), st

    # spot is back and the slack covers two restarts: attempt 3 saves, attempt 4 runs on spot
    hack(kind_cluster, "add-node", SPOT_WORKER)
    running_on(digits, "digits-4", SPOT_WORKER, "spot")
    (back,) = wait_for("the move back to spot", lambda: told(digits, "back to spot"), 60)
    assert "digits-3 on on-demand gets SIGTERM and saves" in back, back
    (ended,) = wait_for("attempt 3's end", lambda: told(digits, "stopped for the deadline"), 120)
    found = re.search(r"step (\d+) \(final save made it\)", ended)
    assert found, ended
    digits.restored_in("digits-4", int(found.group(1)))

    status = digits.finished()
    assert status["phase"] == "Succeeded", status
    # the preemption is counted; the two moves are neither preemptions nor failures
    assert (status["preemptions"], status["failures"], status["attempt"]) == (1, 0, 4), status
    assert status["lastCheckpoint"]["step"] == TOTAL
    assert status["spotSeconds"] > 0 and status["onDemandSeconds"] > 0, status
    assert when(status["completionTime"]) < when(status["deadline"]["finishBy"]), status
    seen = status["deadline"]
    print(f"restarts measured on kind: {seen.get('restartReadings')}")
    assert seen.get("restartReadings"), seen
    assert seen["restartSeconds"] == max(seen["restartReadings"]), seen
