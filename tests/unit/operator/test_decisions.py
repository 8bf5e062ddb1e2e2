"""The operator's decisions as pure functions: pods, outcomes and the next status."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from spotrun_operator import builders, decisions
from spotrun_operator.builders import FINALIZER, Job, desired_pod
from spotrun_operator.decisions import Outcome, classify_end, plan
from spotrun_operator.models import JobSpec, JobStatus

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def job(status: dict[str, Any] | None = None, **spec: Any) -> Job:
    body: dict[str, Any] = {
        "template": {
            "spec": {
                "containers": [
                    {"name": "trainer", "image": "img", "command": ["python", "train.py"]}
                ]
            }
        },
        "checkpoint": {
            "storage": {
                "uri": "s3://bucket/jobs/a",
                "endpoint": "http://s3:9000",
                "secretRef": {"name": "creds"},
            }
        },
    }
    body.update(spec)
    return Job(
        "a",
        "ns",
        "uid-1",
        1,
        "100",
        JobSpec.model_validate(body),
        JobStatus.model_validate(status or {}),
    )


def ended_pod(
    attempt: int,
    phase: str,
    code: int,
    *,
    disrupted: bool = False,
    deleted: bool = False,
    step: int | None = 40,
) -> dict[str, Any]:
    pod = desired_pod(job(), attempt, on_demand=False, gpus_available=False)
    pod["spec"]["nodeName"] = "spot-1"
    sidecar = {"step": step, "uri": "s3://bucket/jobs/a/x", "time": None, "finalSaved": True}
    sidecar_msg = json.dumps(sidecar) if step is not None else ""
    pod["status"] = {
        "phase": phase,
        "startTime": "2026-01-01T11:00:00Z",
        "conditions": [{"type": "DisruptionTarget", "status": "True"}] if disrupted else [],
        "containerStatuses": [
            {
                "name": "trainer",
                "state": {
                    "terminated": {
                        "exitCode": code,
                        "finishedAt": "2026-01-01T11:10:00Z",
                        "message": "Traceback: boom" if code else "",
                    }
                },
            }
        ],
        "initContainerStatuses": [
            {
                "name": builders.SIDECAR,
                "state": {"terminated": {"exitCode": 0, "message": sidecar_msg}},
            }
        ],
    }
    if deleted:
        pod["metadata"]["deletionTimestamp"] = "2026-01-01T11:09:00Z"
    return pod


NODE = {"metadata": {"name": "spot-1"}, "spec": {}}


def test_pod_has_the_contract_sidecar_and_spot_placement():
    pod = desired_pod(job(), 3, on_demand=False, gpus_available=False)
    assert pod["metadata"]["name"] == "a-3"
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert pod["metadata"]["finalizers"] == [FINALIZER]
    trainer = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in trainer["env"]}
    assert env["SPOTRUN_ATTEMPT"] == "3" and env["SPOTRUN_UPLOAD"] == "sidecar"
    assert env["AWS_ACCESS_KEY_ID"] == {
        "secretKeyRef": {"name": "creds", "key": "AWS_ACCESS_KEY_ID"}
    }
    assert trainer["command"] == ["spotrun", "exec", "--", "python", "train.py"]
    sidecar = pod["spec"]["initContainers"][0]
    assert sidecar["restartPolicy"] == "Always"
    # no startupProbe: the trainer starts beside the sidecar; Checkpointer.restore() waits for
    # the sidecar's restore (spotrun.readiness)
    assert "startupProbe" not in sidecar
    assert pod["spec"]["restartPolicy"] == "Never"
    terms = pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert {t["matchExpressions"][0]["key"] for t in terms} >= {
        "karpenter.sh/capacity-type",
        "cloud.google.com/gke-spot",
        "kubernetes.azure.com/scalesetpriority",
        "eks.amazonaws.com/capacityType",
    }
    assert any(
        t["key"] == "kubernetes.azure.com/scalesetpriority" for t in pod["spec"]["tolerations"]
    )


def test_gpu_request_or_cpu_fallback():
    gpu = job(gpu={"count": 1, "fallback": "cpu"})
    with_gpu = desired_pod(gpu, 1, on_demand=False, gpus_available=True)
    assert with_gpu["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    cpu = desired_pod(gpu, 1, on_demand=False, gpus_available=False)
    assert "resources" not in cpu["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in cpu["spec"]["containers"][0]["env"]}
    assert env["SPOTRUN_DEVICE"] == "cpu"
    strict = desired_pod(job(gpu={"count": 1}), 1, on_demand=False, gpus_available=False)
    assert strict["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] == "1"


def test_on_demand_pod_avoids_spot_nodes_and_tolerates_nothing():
    pod = desired_pod(job(), 2, on_demand=True, gpus_available=False)
    assert "tolerations" not in pod["spec"]
    exprs = pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"][0]["matchExpressions"]
    assert all(e["operator"] == "NotIn" for e in exprs)


def test_signal_forwarding_can_be_turned_off():
    pod = desired_pod(job(signalForwarding=False), 1, on_demand=False, gpus_available=False)
    assert pod["spec"]["containers"][0]["command"] == ["python", "train.py"]


@pytest.mark.parametrize(
    ("pod", "node", "outcome"),
    [
        (ended_pod(1, "Succeeded", 0), NODE, Outcome.SUCCEEDED),
        (ended_pod(1, "Succeeded", 0, disrupted=True), NODE, Outcome.PREEMPTED),
        (ended_pod(1, "Succeeded", 0, deleted=True), NODE, Outcome.PREEMPTED),
        (ended_pod(1, "Succeeded", 0), None, Outcome.SUCCEEDED),
        (ended_pod(1, "Failed", 137), None, Outcome.PREEMPTED),
        (ended_pod(1, "Failed", 1), None, Outcome.FAILED),
        (ended_pod(1, "Failed", 143), NODE, Outcome.PREEMPTED),
        (
            ended_pod(1, "Failed", 137),
            {"spec": {"taints": [{"key": "karpenter.sh/disrupted"}]}},
            Outcome.PREEMPTED,
        ),
        (ended_pod(1, "Failed", 1), NODE, Outcome.FAILED),
    ],
)
def test_classify_end(pod, node, outcome):
    ended = classify_end(pod, node, False, "trainer")
    assert ended is not None and ended.outcome is outcome


def test_running_pod_has_not_ended_and_suspension_is_not_a_preemption():
    running = ended_pod(1, "Running", 0)
    assert classify_end(running, NODE, False, "trainer") is None
    stopped = classify_end(ended_pod(1, "Succeeded", 0, deleted=True), NODE, True, "trainer")
    assert stopped is not None and stopped.outcome is Outcome.SUSPENDED


def test_first_pass_creates_attempt_one():
    out = plan(job(), [], {}, False, NOW)
    assert out.create is not None and out.create["metadata"]["name"] == "a-1"
    assert out.status.attempt == 1 and out.status.activePod == "a-1"


def test_an_existing_pod_is_not_created_again():
    running = ended_pod(1, "Running", 0)
    out = plan(job({"attempt": 1, "activePod": "a-1"}), [running], {"spot-1": NODE}, False, NOW)
    assert out.create is None and out.status.phase == "Running"


def test_preemption_counts_and_advances_after_backoff():
    status = {"attempt": 1, "activePod": "a-1", "phase": "Running"}
    out = plan(job(status), [ended_pod(1, "Succeeded", 0, disrupted=True)], {}, False, NOW)
    st = out.status
    assert (st.preemptions, st.failures, st.attempt, st.phase) == (1, 0, 2, "Restarting")
    assert st.lastCheckpoint is not None and st.lastCheckpoint.step == 40
    assert out.release == ["a-1"] and out.create is None
    assert any(r == "Preempted" and "step 40" in msg for _, r, msg in out.events)
    later = plan(job(st.model_dump()), [], {}, False, NOW + timedelta(seconds=5))
    assert later.create is not None and later.create["metadata"]["name"] == "a-2"
    assert any(r == "Restoring" and "step 40" in msg for _, r, msg in later.events)


def test_failures_count_against_backoff_limit_but_preemptions_do_not():
    status = {"attempt": 3, "activePod": "a-3", "failures": 1, "preemptions": 5}
    out = plan(job(status, backoffLimit=1), [ended_pod(3, "Failed", 1)], {}, False, NOW)
    assert out.status.phase == "Failed" and out.status.failures == 2
    failed = next(c for c in out.status.conditions if c.type == "Failed")
    assert failed.reason == "BackoffLimitExceeded"
    assert "exit code 1" in failed.message and "boom" in failed.message


def test_fallback_to_on_demand_after_consecutive_preemptions():
    status = {"attempt": 2, "activePod": "a-2", "preemptions": 1, "consecutivePreemptions": 1}
    job_ = job(status, spot={"fallbackToOnDemandAfter": 2})
    out = plan(job_, [ended_pod(2, "Failed", 143)], {}, False, NOW)
    assert out.status.onDemand
    nxt = plan(
        job(out.status.model_dump(), spot={"fallbackToOnDemandAfter": 2}),
        [],
        {},
        False,
        NOW + timedelta(seconds=5),
    )
    assert nxt.create is not None
    assert nxt.create["metadata"]["labels"][builders.LABEL_CAPACITY] == "on-demand"


def test_max_preemptions_fails_the_job():
    status = {"attempt": 3, "activePod": "a-3", "preemptions": 2}
    out = plan(
        job(status, spot={"maxPreemptions": 2}), [ended_pod(3, "Failed", 143)], {}, False, NOW
    )
    assert out.status.phase == "Failed"


def test_interruption_taint_deletes_the_running_pod_once():
    tainted = {"spec": {"taints": [{"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}]}}
    running = ended_pod(1, "Running", 0)
    out = plan(job({"attempt": 1, "activePod": "a-1"}), [running], {"spot-1": tainted}, False, NOW)
    assert out.delete == ["a-1"]
    assert any(r == "InterruptionNotice" for _, r, _m in out.events)
    running["metadata"]["deletionTimestamp"] = "2026-01-01T12:00:00Z"
    again = plan(
        job({"attempt": 1, "activePod": "a-1"}), [running], {"spot-1": tainted}, False, NOW
    )
    assert again.delete == []


def test_suspend_deletes_then_resume_creates_the_next_attempt():
    running = ended_pod(1, "Running", 0)
    out = plan(
        job({"attempt": 1, "activePod": "a-1"}, suspend=True),
        [running],
        {"spot-1": NODE},
        False,
        NOW,
    )
    assert out.delete == ["a-1"]
    stopped = ended_pod(1, "Succeeded", 0, deleted=True)
    out = plan(job({"attempt": 1, "activePod": "a-1"}, suspend=True), [stopped], {}, False, NOW)
    assert out.status.phase == "Suspended" and out.status.preemptions == 0
    assert out.create is None
    resumed = plan(job(out.status.model_dump()), [], {}, False, NOW)
    assert resumed.create is not None and resumed.create["metadata"]["name"] == "a-2"


def test_pending_timeout_moves_to_on_demand():
    pending = ended_pod(1, "Pending", 0)
    pending["metadata"]["creationTimestamp"] = "2026-01-01T11:59:00Z"
    pending["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "False", "message": "0/3 nodes are available"}
    ]
    out = plan(
        job({"attempt": 1, "activePod": "a-1"}, spot={"pendingTimeoutSeconds": 30}),
        [pending],
        {},
        False,
        NOW,
    )
    assert out.status.onDemand and out.status.attempt == 2 and out.delete == ["a-1"]


def test_old_attempt_pods_are_released():
    old = ended_pod(1, "Succeeded", 0, disrupted=True)
    out = plan(job({"attempt": 2, "activePod": None, "preemptions": 1}), [old], {}, False, NOW)
    assert "a-1" in out.release and out.create is not None


def test_savings_estimate():
    st = JobStatus(spotSeconds=3600, onDemandSeconds=0)
    decisions._savings(st, job(cost={"spotHourly": 1.0, "onDemandHourly": 3.0}).spec)
    assert st.estimatedSavings == 2.0
