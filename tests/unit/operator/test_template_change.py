"""Editing spec.template of a job: the running attempt saves and the next one runs the new
template (templates.py); the decision as a pure function and through decisions.plan."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest

from spotrun_operator import builders, templates
from spotrun_operator.builders import FINALIZER, Job
from spotrun_operator.decisions import Outcome, classify_end, plan
from spotrun_operator.models import JobSpec, JobStatus

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
NODE = {
    "metadata": {"name": "spot-1"},
    "spec": {},
    "status": {"conditions": [{"type": "Ready", "status": "True"}]},
}
OLD_LR, NEW_LR = "0.01", "0.5"


def job(lr: str, generation: int, status: dict[str, Any] | None = None, **spec: Any) -> Job:
    body: dict[str, Any] = {
        "template": {
            "spec": {
                "containers": [
                    {"name": "trainer", "image": "img", "command": ["python", "t.py", "--lr", lr]}
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
        **spec,
    }
    return Job(
        "a",
        "ns",
        "uid-1",
        generation,
        "100",
        JobSpec.model_validate(body),
        JobStatus.model_validate(status or {}),
    )


def first_pass() -> tuple[dict[str, Any], JobStatus]:
    """Attempt 1's pod as the operator creates it for generation 1, and the status then."""
    out = plan(job(OLD_LR, 1), [], {}, False, NOW)
    assert out.create is not None
    return out.create, out.status


def running(pod: dict[str, Any], deleted: bool = False) -> dict[str, Any]:
    pod = json.loads(json.dumps(pod))
    pod["spec"]["nodeName"] = "spot-1"
    pod["status"] = {"phase": "Running", "startTime": "2026-01-01T11:00:00Z"}
    if deleted:
        pod["metadata"]["deletionTimestamp"] = "2026-01-01T11:59:50Z"
    return pod


def ended(pod: dict[str, Any], code: int, step: int = 40, disrupted: bool = False) -> Any:
    """The pod after our graceful delete: its trainer saved step ``step`` and exited."""
    pod = running(pod, deleted=True)
    report = {"step": step, "uri": "s3://bucket/jobs/a/x", "time": None, "finalSaved": True}
    pod["status"] = {
        "phase": "Succeeded" if code == 0 else "Failed",
        "startTime": "2026-01-01T11:00:00Z",
        "conditions": [{"type": "DisruptionTarget", "status": "True"}] if disrupted else [],
        "containerStatuses": [
            {
                "name": "trainer",
                "state": {"terminated": {"exitCode": code, "finishedAt": "2026-01-01T11:59:55Z"}},
            }
        ],
        "initContainerStatuses": [
            {
                "name": builders.SIDECAR,
                "state": {"terminated": {"exitCode": 0, "message": json.dumps(report)}},
            }
        ],
    }
    return pod


def status_dict(st: JobStatus) -> dict[str, Any]:
    return st.model_dump(mode="json", exclude_none=True)


def reasons(out: Any) -> list[str]:
    return [e.reason for e in out.events]


@pytest.mark.parametrize(
    ("phase", "deleting", "suspended", "is_changed", "expected"),
    [
        ("Running", False, False, True, "stop"),
        ("Running", False, False, False, "keep"),
        ("Pending", False, False, True, "replace"),
        (None, False, False, True, "replace"),
        ("Pending", False, False, False, "keep"),
        ("Running", False, True, True, "keep"),  # suspend wins
        ("Pending", False, True, True, "keep"),
        ("Running", True, False, True, "keep"),  # already stopping: wait for its end
        ("Succeeded", False, False, True, "keep"),
        ("Failed", False, False, True, "keep"),
        ("Succeeded", False, False, False, "keep"),
        # a partitioned node: its trainer may still write the same prefix, so no new attempt
        ("Unknown", False, False, True, "keep"),
    ],
)
def test_action_of_each_pod_state(phase, deleting, suspended, is_changed, expected):
    assert templates.action(phase, deleting, suspended, is_changed) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7),
        ("123456789012345678", 123456789012345678),
        ("\u00b2", None),
        ("9" * 5000, None),
        ("-1", None),
        ("", None),
        (7, None),
    ],
)
def test_the_generation_annotation_is_read_only_when_it_is_a_plain_number(value, expected):
    pod = {"metadata": {"annotations": {templates.ANNOTATION_GENERATION: value}}}
    assert templates.pod_generation(pod) == expected


def test_the_hash_follows_the_template_not_its_key_order():
    a = {"spec": {"containers": [{"name": "t", "command": ["x", "--lr", "1"]}]}}
    b = {"spec": {"containers": [{"command": ["x", "--lr", "1"], "name": "t"}]}}
    c = {"spec": {"containers": [{"name": "t", "command": ["x", "--lr", "2"]}]}}
    assert templates.template_hash(a) == templates.template_hash(b)
    assert templates.template_hash(a) != templates.template_hash(c)


def test_a_new_pod_records_its_template_and_generation():
    pod, st = first_pass()
    notes = pod["metadata"]["annotations"]
    assert notes[templates.ANNOTATION_HASH] == templates.template_hash(job(OLD_LR, 1).spec.template)
    assert notes[templates.ANNOTATION_GENERATION] == "1"
    assert st.templateGeneration == 1 and st.observedGeneration == 1


def test_an_unchanged_template_keeps_the_running_pod_at_a_new_generation():
    pod, st = first_pass()
    out = plan(
        job(OLD_LR, 2, status_dict(st), backoffLimit=5),
        [running(pod)],
        {"spot-1": NODE},
        False,
        NOW,
    )
    assert out.delete == [] and out.create is None
    assert "TemplateChanged" not in reasons(out)
    assert out.status.observedGeneration == 2 and out.status.templateGeneration == 1


def test_a_changed_template_stops_the_running_pod_gracefully_then_restarts_from_its_save():
    pod, st = first_pass()
    edited = job(NEW_LR, 2, status_dict(st), backoffLimit=0, spot={"maxPreemptions": 0})
    out = plan(edited, [running(pod)], {"spot-1": NODE}, False, NOW)
    assert out.delete == ["a-1"] and out.release == [] and out.create is None
    (event,) = [e for e in out.events if e.reason == "TemplateChanged"]
    assert "generation 1 -> 2" in event.message and "a-1 gets SIGTERM and saves" in event.message
    assert out.status.attempt == 1 and out.status.templateGeneration == 1

    # while it saves: nothing more (no second delete, no new pod)
    stopping = plan(
        job(NEW_LR, 2, status_dict(out.status), backoffLimit=0),
        [running(pod, deleted=True)],
        {"spot-1": NODE},
        False,
        NOW,
    )
    assert stopping.delete == [] and stopping.create is None

    # it ended (exit 0 after the SIGTERM save of step 40): the next attempt, new template
    edited = job(
        NEW_LR, 2, status_dict(stopping.status), backoffLimit=0, spot={"maxPreemptions": 0}
    )
    after = plan(edited, [ended(pod, 0)], {"spot-1": NODE}, False, NOW)
    st2 = after.status
    assert st2.preemptions == 0 and st2.failures == 0 and st2.consecutivePreemptions == 0
    assert st2.phase == "Restarting" and st2.attempt == 2
    assert st2.lastCheckpoint is not None and st2.lastCheckpoint.step == 40
    assert after.release == ["a-1"]
    assert after.create is not None and after.create["metadata"]["name"] == "a-2"
    assert after.create["spec"]["containers"][0]["command"][-2:] == ["--lr", NEW_LR]
    assert after.create["metadata"]["annotations"][templates.ANNOTATION_GENERATION] == "2"
    assert st2.templateGeneration == 2
    said = {e.reason: e.message for e in after.events}
    assert "generation 1 -> 2" in said["TemplateChanged"]
    assert "Preempted" not in said and "AttemptFailed" not in said
    assert "from step 40" in said["Restoring"]


def test_a_trainer_killed_by_our_delete_is_no_failure():
    pod, st = first_pass()
    out = plan(
        job(NEW_LR, 2, status_dict(st), backoffLimit=0),
        [ended(pod, 143)],
        {"spot-1": NODE},
        False,
        NOW,
    )
    assert out.status.failures == 0 and out.status.phase == "Restarting"
    assert out.create is not None


def test_a_platform_preemption_during_the_change_still_counts_as_one():
    pod, st = first_pass()
    out = plan(
        job(NEW_LR, 2, status_dict(st), spot={"backoffSeconds": 0}),
        [ended(pod, 0, disrupted=True)],
        {"spot-1": NODE},
        False,
        NOW,
    )
    assert out.status.preemptions == 1
    assert "Preempted" in reasons(out) and "TemplateChanged" not in reasons(out)
    assert out.create is not None  # the next attempt runs the new template all the same
    assert out.create["spec"]["containers"][0]["command"][-1] == NEW_LR


def test_classify_end_needs_the_operators_delete_for_a_template_change():
    pod, _ = first_pass()
    spec_end = classify_end(ended(pod, 0), NODE, False, "trainer", template_changed=True)
    assert spec_end is not None and spec_end.outcome is Outcome.TEMPLATE_CHANGED
    done = ended(pod, 0)
    del done["metadata"]["deletionTimestamp"]  # ran to its end on its own: the job is done
    finished = classify_end(done, NODE, False, "trainer", template_changed=True)
    assert finished is not None and finished.outcome is Outcome.SUCCEEDED


def test_a_pending_pod_is_replaced_at_once():
    pod, st = first_pass()
    pending = json.loads(json.dumps(pod))
    pending["status"] = {"phase": "Pending"}
    out = plan(job(NEW_LR, 2, status_dict(st)), [pending], {}, False, NOW)
    assert out.delete == ["a-1"] and out.release == ["a-1"]
    assert out.create is not None and out.create["metadata"]["name"] == "a-2"
    assert out.create["spec"]["containers"][0]["command"][-1] == NEW_LR
    assert out.status.attempt == 2 and out.status.templateGeneration == 2
    assert out.status.preemptions == 0 and out.status.failures == 0
    assert "TemplateChanged" in reasons(out)


def test_suspend_wins_over_a_template_change_and_the_resume_runs_the_new_template():
    pod, st = first_pass()
    out = plan(
        job(NEW_LR, 2, status_dict(st), suspend=True), [running(pod)], {"spot-1": NODE}, False, NOW
    )
    assert out.delete == ["a-1"]
    assert "Suspended" in reasons(out) and "TemplateChanged" not in reasons(out)
    gone = plan(
        job(NEW_LR, 2, status_dict(out.status), suspend=True),
        [ended(pod, 0)],
        {"spot-1": NODE},
        False,
        NOW,
    )
    assert gone.status.phase == "Suspended" and gone.create is None
    assert "TemplateChanged" not in reasons(gone)
    resumed = plan(job(NEW_LR, 3, status_dict(gone.status)), [], {}, False, NOW)
    assert resumed.create is not None
    assert resumed.create["spec"]["containers"][0]["command"][-1] == NEW_LR
    assert resumed.status.templateGeneration == 3


def test_a_finished_job_ignores_a_template_edit():
    pod, st = first_pass()
    done_pod = ended(pod, 0)
    del done_pod["metadata"]["deletionTimestamp"]
    done = plan(job(OLD_LR, 1, status_dict(st)), [done_pod], {"spot-1": NODE}, False, NOW)
    assert done.status.phase == "Succeeded"
    later = plan(job(NEW_LR, 2, status_dict(done.status)), [], {}, False, NOW)
    assert later.create is None and later.status.phase == "Succeeded"
    assert "TemplateChanged" not in reasons(later)


def test_a_pod_of_an_older_operator_without_the_annotation_is_left_alone():
    pod, st = first_pass()
    bare = running(pod)
    bare["metadata"]["annotations"] = {}
    assert FINALIZER in bare["metadata"]["finalizers"]
    out = plan(job(NEW_LR, 2, status_dict(st)), [bare], {"spot-1": NODE}, False, NOW)
    assert out.delete == [] and "TemplateChanged" not in reasons(out)
