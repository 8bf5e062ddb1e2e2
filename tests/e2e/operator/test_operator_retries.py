"""Failures count against backoffLimit, preemptions do not; fallback to on-demand nodes."""

from __future__ import annotations

from typing import Any

import pytest
from e2e_support import IMAGE, read_pod, wait_for
from kubernetes import client
from test_operator_digits import ARGS, PLURAL, events_of, get_job, running_on, s3_secret

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
if os.environ.get("FAIL") == "1":
    print("step 7: loss is NaN, giving up", file=sys.stderr)
    sys.exit(1)
"""


def job(name: str, bucket: str, endpoint: str, env: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "spotrun.dev/v1alpha1", "kind": "ResumableTrainingJob",
        "metadata": {"name": name},
        "spec": {
            "template": {"spec": {"containers": [{
                "name": "trainer", "image": IMAGE, "command": ["python", "-c", TRAINER],
                "env": [{"name": k, "value": v} for k, v in env.items()]}]}},
            "checkpoint": {"storage": {"uri": f"s3://{bucket}/{name}", "endpoint": endpoint,
                                       "secretRef": {"name": "s3-credentials"}}},
            "terminationGracePeriodSeconds": 10,
            **spec,
        },
    }


def finished(custom: client.CustomObjectsApi, namespace: str, name: str) -> Any:
    j = get_job(custom, namespace, name)
    return j if j.get("status", {}).get("phase") in ("Succeeded", "Failed") else None


def test_exit_1_is_retried_backoff_limit_times_then_failed_preemption_not_counted(
    cluster, namespace, operator, process_node, s3, s3_bucket
):
    core, custom = cluster.core(), client.CustomObjectsApi(cluster.api)
    s3_secret(core, namespace, s3)
    custom.create_namespaced_custom_object(*ARGS, namespace, PLURAL, job(
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
    reasons = [r for r, _ in events_of(core, namespace, "flaky")]
    assert reasons.count("Preempted") == 1 and reasons.count("AttemptFailed") == 1


def test_after_two_preemptions_the_third_attempt_runs_on_demand_with_proactive_delete(
    cluster, namespace, operator, process_node, s3, s3_bucket
):
    core, custom = cluster.core(), client.CustomObjectsApi(cluster.api)
    s3_secret(core, namespace, s3)
    custom.create_namespaced_custom_object(*ARGS, namespace, PLURAL, job(
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
    events = events_of(core, namespace, "fallback")
    reasons = [r for r, _ in events]
    assert reasons.count("InterruptionNotice") == 2, events
    assert reasons.count("FallbackToOnDemand") == 1, events
