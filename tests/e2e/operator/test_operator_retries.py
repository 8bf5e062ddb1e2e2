"""Failures count against backoffLimit, preemptions do not; fallback to on-demand nodes."""

from __future__ import annotations

from typing import Any

import pytest
from e2e_support import read_pod, wait_for

# finished: test_operator_pvc imports it from here.
from operator_support import (
    events_once,
    finished,
    get_job,
    rtj_body,
    running_on,
    s3_checkpoint,
    submit,
    trainer,
)

pytestmark = pytest.mark.e2e

# Attempts up to PREEMPTIBLE_ATTEMPTS train until SIGTERM (then exit 0, as spotrun does);
# later ones exit 1 when FAIL=1 (with a last log line), else 0.
TRAINER = """
import os, signal, sys, time
attempt = int(os.environ["SPOTRUN_ATTEMPT"])
preempt_until = int(os.environ.get("PREEMPTIBLE_ATTEMPTS", "1"))
if attempt <= preempt_until:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    time.sleep(600)
time.sleep(float(os.environ.get("RUN_SECONDS", "0")))
if os.environ.get("FAIL") == "1":
    print("step 7: loss is NaN, giving up", file=sys.stderr)
    sys.exit(1)
"""


def job(name: str, bucket: str, endpoint: str, env: dict[str, str], port: int | None = None,
        code: str = TRAINER, **spec: Any) -> dict[str, Any]:
    """A job of the toy trainer ``code`` (``python -c``) with ``env``; a sidecar on ``port``."""
    return rtj_body(name, trainer(["python", "-c", code], env),
                    s3_checkpoint(bucket, name, endpoint, port),
                    **{"terminationGracePeriodSeconds": 10, **spec})


def test_exit_1_is_retried_backoff_limit_times_then_failed_preemption_not_counted(
    cluster, namespace, operator, process_node, s3, s3_bucket
):
    core, custom = submit(cluster, namespace, s3, job(
        "flaky", s3_bucket, s3.endpoint_url, {"FAIL": "1"}, backoffLimit=1))
    node = wait_for(lambda: running_on(core, namespace, "flaky-1"), "flaky-1 to run",
                    timeout=120)
    process_node.preempt(node)
    process_node.add_node("spot")

    done = wait_for(lambda: finished(custom, namespace, "flaky"), "the job to fail",
                    timeout=240)
    status = done["status"]
    assert status["phase"] == "Failed"
    assert (status["preemptions"], status["failures"], status["attempt"]) == (1, 2, 3)
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert "exit code 1" in failed["message"]
    assert "loss is NaN" in failed["message"], failed["message"]
    events = events_once(core, namespace, "flaky", {"Preempted": 1, "AttemptFailed": 1})
    reasons = [r for r, _ in events]
    assert reasons.count("Preempted") == 1 and reasons.count("AttemptFailed") == 1


def test_after_two_preemptions_the_third_attempt_runs_on_demand_with_proactive_delete(
    cluster, namespace, operator, process_node, s3, s3_bucket
):
    core, custom = submit(cluster, namespace, s3, job(
        "fallback", s3_bucket, s3.endpoint_url, {"PREEMPTIBLE_ATTEMPTS": "2"},
        spot={"fallbackToOnDemandAfter": 2}))
    for attempt in (1, 2):
        node = wait_for(lambda a=attempt: running_on(core, namespace, f"fallback-{a}"),
                        f"fallback-{attempt} to run", timeout=120)
        assert core.read_node(node).metadata.labels["karpenter.sh/capacity-type"] == "spot"
        # A notice before the eviction: the operator deletes the pod on the taint itself.
        process_node.preempt(node, notice_seconds=20)
        process_node.add_node("spot")
        wait_for(lambda a=attempt: get_job(custom, namespace, "fallback")
                 .get("status", {}).get("preemptions", 0) >= a,
                 f"preemption {attempt} recorded", timeout=90)

    pod = wait_for(lambda: (p := read_pod(core, namespace, "fallback-3")) is not None
                   and p.spec.node_name and p, "fallback-3 to be scheduled", timeout=60)
    labels = core.read_node(pod.spec.node_name).metadata.labels
    assert labels["karpenter.sh/capacity-type"] == "on-demand"
    done = wait_for(lambda: finished(custom, namespace, "fallback"), "the job to finish",
                    timeout=120)
    assert done["status"]["phase"] == "Succeeded"
    events = events_once(core, namespace, "fallback",
                         {"InterruptionNotice": 2, "FallbackToOnDemand": 1})
    reasons = [r for r, _ in events]
    assert reasons.count("InterruptionNotice") == 2, events
    assert reasons.count("FallbackToOnDemand") == 1, events
