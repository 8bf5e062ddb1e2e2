"""What the operator charges, and where it moves an attempt, on kind's real kubelets (README.md,
"The operator"):

- a preemption with notice is not charged to backoffLimit: the operator deletes the pod as soon
  as its node is tainted for interruption (InterruptionNotice); a trainer's own exit 1 is,
  retried up to backoffLimit, then the job is Failed with the exit code and the trainer's last
  log lines; a job with `spot.maxPreemptions: 0` fails at that same preemption, with that
  reason, and gets no second attempt;
- a spot pod pending longer than `spot.pendingTimeoutSeconds` (the spot worker cordoned: no
  spot capacity) is replaced by the next attempt on on-demand nodes.

Each job runs a tiny `python -c` script in the pushed trainer image (pulled by both workers
earlier in the session), its checkpoints in the S3 server pods reach (hack/kind/s3).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
import yaml

from tests.kind import chart
from tests.kind.jobs import ON_DEMAND_WORKER, SPOT_WORKER, Job, hack, rtj
from tests.kind.kindenv import KindCluster, wait_for

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800)]

Submit = Callable[..., Job]  # submit(name, code, **spot)

NAMESPACE = "retries-kind"
BACKOFF_LIMIT = 1
# Attempt 1 trains until SIGTERM (then exits 0, as spotrun's trainers do); later ones give up.
# Both lines go to stderr: containerd reads a container's stdout and stderr pipes separately, so
# lines on the two streams can reach the log (and the termination message) in either order.
FLAKY = """
import os, signal, sys, time
attempt = os.environ["SPOTRUN_ATTEMPT"]
print(f"attempt {attempt} training", file=sys.stderr, flush=True)
if attempt == "1":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    time.sleep(3600)
print(f"attempt {attempt} step 7: loss is NaN, giving up", file=sys.stderr, flush=True)
sys.exit(1)
"""
SHORT = "import time\nprint('training', flush=True)\ntime.sleep(3)\nprint('done', flush=True)\n"


def job(
    name: str, pushed: dict[str, str], s3: dict[str, str], code: str, **spot: int
) -> dict[str, Any]:
    trainer = {"image": pushed["trainer"], "command": ["python", "-c", code]}
    body = rtj(name, trainer, s3, BACKOFF_LIMIT, grace=10)
    body["spec"]["spot"].update(spot)
    return body


def events(j: Job) -> list[tuple[str, str]]:
    """(reason, message) of every Event on the job."""
    selector = f"involvedObject.name={j.name}"
    listed = json.loads(j.k("get", "events", "--field-selector", selector, "-o", "json"))
    return [(e["reason"], e["message"]) for e in listed["items"]]


def pods(j: Job) -> dict[str, dict[str, Any]]:
    listed = json.loads(j.k("get", "pods", "-l", f"spotrun.dev/job={j.name}", "-o", "json"))
    return {p["metadata"]["name"]: p for p in listed["items"]}


def failed(status: dict[str, Any]) -> dict[str, Any]:
    (condition,) = [c for c in status["conditions"] if c["type"] == "Failed"]
    assert condition["status"] == "True", status
    return dict(condition)


@pytest.fixture
def submit(
    kind_cluster: KindCluster, pushed: dict[str, str], kind_s3: dict[str, str], operator: None
) -> Iterator[Submit]:
    """submit(name, code, **spot) -> Job: a job of script CODE applied in NAMESPACE (with the
    S3 Secret); the namespace is deleted after, while the operator runs (its finalizers)."""
    kind_cluster.kubectl("create", "namespace", NAMESPACE)
    kind_cluster.kubectl(
        "-n", NAMESPACE, "apply", "-f", "-", stdin=yaml.safe_dump(chart.s3_secret(kind_s3))
    )

    def apply(name: str, code: str, **spot: int) -> Job:
        j = Job(kind_cluster, kind_s3, NAMESPACE, name)
        body = yaml.safe_dump(job(name, pushed, kind_s3, code, **spot))
        kind_cluster.kubectl("-n", NAMESPACE, "apply", "-f", "-", stdin=body)
        return j

    try:
        yield apply
    finally:
        kind_cluster.delete_namespace(NAMESPACE)


def test_a_preemption_with_notice_is_not_charged_exit_1_is_and_max_preemptions_fails(
    submit: Submit, kind_cluster: KindCluster
) -> None:
    flaky = submit("flaky", FLAKY)
    fragile = submit("fragile", FLAKY, maxPreemptions=0)
    for j in (flaky, fragile):
        first = f"{j.name}-1"
        node = wait_for(f"{first} to run", partial(j.running_node, first), 900)
        assert node == SPOT_WORKER
    # a notice long enough that the operator, not the eviction, ends the pods
    hack(kind_cluster, "preempt", SPOT_WORKER, "--notice", "20")
    hack(kind_cluster, "add-node", SPOT_WORKER)  # spot capacity back for attempts 2 and 3

    status = flaky.finished()
    assert status["phase"] == "Failed", status
    # the preemption is not charged; both exits 1 are
    want = (1, BACKOFF_LIMIT + 1, BACKOFF_LIMIT + 2, 1)
    got = tuple(status[k] for k in ("preemptions", "failures", "attempt", "lastExitCode"))
    assert got == want, status
    condition = failed(status)
    assert condition["reason"] == "BackoffLimitExceeded", condition
    # the exit code and the trainer's last log lines (its termination message)
    message = condition["message"]
    last = "last: attempt 3 (flaky-3) failed with exit code 1: "
    assert f"2 failures exceed backoffLimit={BACKOFF_LIMIT}; {last}" in message, condition
    assert message.endswith("attempt 3 step 7: loss is NaN, giving up"), condition
    told = events(flaky)
    reasons = [r for r, _ in told]
    (notice,) = [m for r, m in told if r == "InterruptionNotice"]
    assert f"node {SPOT_WORKER} has taint" in notice and "deleting flaky-1 now" in notice, told
    assert reasons.count("Preempted") == 1, told
    (retried,) = [m for r, m in told if r == "AttemptFailed"]
    assert retried.startswith("attempt 2 (flaky-2) failed with exit code 1: "), retried
    assert "attempt 2 step 7: loss is NaN, giving up; retry 1 of" in retried, retried
    assert retried.endswith(f"retry 1 of {BACKOFF_LIMIT}"), retried
    (gave_up,) = [m for r, m in told if r == "BackoffLimitExceeded"]
    assert gave_up == message, told

    status = fragile.finished()
    assert status["phase"] == "Failed", status
    got = tuple(status[k] for k in ("preemptions", "failures", "attempt"))
    assert got == (1, 0, 1), status
    condition = failed(status)
    assert condition["reason"] == "MaxPreemptionsExceeded", condition
    assert condition["message"] == "1 preemptions exceed spot.maxPreemptions=0", condition
    told = events(fragile)
    assert [r for r, _ in told].count("InterruptionNotice") == 1, told
    assert "fragile-2" not in pods(fragile), told  # no attempt after the one preempted


@pytest.fixture
def no_spot_capacity(kind_cluster: KindCluster) -> Iterator[None]:
    """The spot worker cordoned: a spot pod pends for want of capacity."""
    kind_cluster.kubectl("cordon", SPOT_WORKER)
    try:
        yield
    finally:
        kind_cluster.kubectl("uncordon", SPOT_WORKER)


def test_a_spot_pod_pending_too_long_is_replaced_on_demand(
    no_spot_capacity: None, submit: Submit
) -> None:
    patient = submit("patient", SHORT, pendingTimeoutSeconds=15)
    status = patient.finished()
    assert status["phase"] == "Succeeded", status
    # the pending attempt is neither a preemption nor a failure: attempt 2 replaced it
    got = tuple(status[k] for k in ("preemptions", "failures", "attempt"))
    assert got == (0, 0, 2), status
    told = events(patient)
    (timeout,) = [m for r, m in told if r == "PendingTimeout"]
    assert timeout.startswith("patient-1 pending ") and timeout.endswith(
        "s for spot capacity: attempt 2 runs on on-demand nodes"
    ), timeout
    (created,) = [m for r, m in told if r == "AttemptCreated" and "patient-2" in m]
    assert created == "attempt 2 (patient-2) created on on-demand nodes", told
    placed = pods(patient)
    assert "patient-1" not in placed, placed
    assert placed["patient-2"]["spec"]["nodeName"] == ON_DEMAND_WORKER
    assert "done" in patient.trainer_log("patient-2")
