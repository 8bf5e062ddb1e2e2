"""Checkpoints on a PVC: the report-mode sidecar names the newest step, so Events name the step
and the claim; only when no step is known do they just say where the checkpoints are."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from spotrun_operator import builders
from spotrun_operator.decisions import plan
from tests.unit.operator.test_decisions import NOW, ended_pod, job

pytestmark = pytest.mark.unit

PVC = {"storage": {"pvc": {"claimName": "ckpt"}}}
RUNNING = {"attempt": 1, "activePod": "a-1", "phase": "Running"}


def pvc_ended(step: int | None, final_saved: bool = True) -> dict[str, Any]:
    """Attempt 1 preempted; its report sidecar's termination message names ``step``."""
    pod = ended_pod(1, "Succeeded", 0, disrupted=True, step=None)
    report = {"step": step, "uri": "file:///ckpt/step", "time": None, "finalSaved": final_saved}
    (sidecar,) = pod["status"]["initContainerStatuses"]
    assert sidecar["name"] == builders.SIDECAR
    sidecar["state"]["terminated"]["message"] = json.dumps(report) if step is not None else ""
    return pod


def restoring(status: dict[str, Any]) -> list[str]:
    later = plan(job(status, checkpoint=PVC), [], {}, False, NOW + timedelta(seconds=5))
    assert later.create is not None and later.create["metadata"]["name"] == "a-2"
    return [msg for _, r, msg in later.events if r == "Restoring"]


def test_a_preempted_pvc_job_names_the_step_its_sidecar_saw_and_restores_from_it():
    out = plan(job(RUNNING, checkpoint=PVC), [pvc_ended(120)], {}, False, NOW)
    assert out.status.lastCheckpoint is not None
    assert (out.status.lastCheckpoint.step, out.status.lastCheckpoint.finalSaved) == (120, True)
    assert out.status.progress == "step 120"
    preempted = [msg for _, r, msg in out.events if r == "Preempted"]
    assert len(preempted) == 1, out.events
    assert "last checkpoint step 120 on PVC ckpt (final save made it)" in preempted[0]
    assert restoring(out.status.model_dump()) == [
        "attempt 2 (a-2) on spot nodes restores from step 120 on PVC ckpt"
    ]


def test_a_final_save_that_did_not_make_it_is_said():
    out = plan(job(RUNNING, checkpoint=PVC), [pvc_ended(80, False)], {}, False, NOW)
    preempted = [msg for _, r, msg in out.events if r == "Preempted"]
    assert "step 80 on PVC ckpt (final save did not make it)" in preempted[0], out.events


def test_live_progress_of_a_running_pvc_job_comes_from_its_sidecar():
    pod = builders.desired_pod(job(checkpoint=PVC), 1, on_demand=False, gpus_available=False)
    pod["spec"]["nodeName"] = "spot-1"
    pod["status"] = {"phase": "Running", "podIP": "10.0.0.7"}
    live = {"step": 45, "epoch": 1, "uri": "file:///ckpt/s", "metrics": {"loss": 0.5}}
    out = plan(job(RUNNING, checkpoint=PVC), [pod], {}, False, NOW, live=live)
    assert out.status.lastCheckpoint is not None and out.status.lastCheckpoint.step == 45
    assert out.status.progress == "step 45 (epoch 1), loss 0.5"


def test_without_a_known_step_the_events_name_the_claim():
    """A pod whose sidecar left no message (it vanished, or no checkpoint yet)."""
    out = plan(job(RUNNING, checkpoint=PVC), [pvc_ended(None)], {}, False, NOW)
    assert out.status.lastCheckpoint is None
    preempted = [msg for _, r, msg in out.events if r == "Preempted"]
    assert len(preempted) == 1 and "checkpoints on PVC ckpt" in preempted[0], out.events
    assert restoring(out.status.model_dump()) == [
        "attempt 2 (a-2) on spot nodes restores from the newest checkpoint on PVC ckpt, if any"
    ]


def test_the_first_attempt_of_a_pvc_job_is_just_created():
    out = plan(job(checkpoint=PVC), [], {}, False, NOW)
    assert [r for _, r, _ in out.events] == ["AttemptCreated"]


def test_an_s3_job_without_a_checkpoint_says_so():
    ended = ended_pod(1, "Succeeded", 0, disrupted=True, step=None)
    out = plan(job(RUNNING), [ended], {}, False, NOW)
    assert any(r == "Preempted" and "no checkpoint yet" in msg for _, r, msg in out.events)


def test_an_s3_job_names_the_step_without_a_claim():
    out = plan(job(RUNNING), [ended_pod(1, "Succeeded", 0, disrupted=True)], {}, False, NOW)
    preempted = [msg for _, r, msg in out.events if r == "Preempted"]
    assert "last checkpoint step 40 (final save made it)" in preempted[0], out.events
    assert "PVC" not in preempted[0]
