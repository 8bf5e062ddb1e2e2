"""Checkpoints on a PVC: no sidecar reports a step, so Events say where the checkpoints are."""

from __future__ import annotations

from datetime import timedelta

import pytest

from spotrun_operator.decisions import plan
from tests.unit.operator.test_decisions import NOW, ended_pod, job

pytestmark = pytest.mark.unit

PVC = {"storage": {"pvc": {"claimName": "ckpt"}}}


def test_a_preempted_pvc_job_says_its_next_attempt_restores_from_the_claim():
    status = {"attempt": 1, "activePod": "a-1", "phase": "Running"}
    ended = ended_pod(1, "Succeeded", 0, disrupted=True, step=None)
    out = plan(job(status, checkpoint=PVC), [ended], {}, False, NOW)
    assert out.status.lastCheckpoint is None
    preempted = [msg for _, r, msg in out.events if r == "Preempted"]
    assert len(preempted) == 1 and "checkpoints on PVC ckpt" in preempted[0], out.events
    later = plan(
        job(out.status.model_dump(), checkpoint=PVC), [], {}, False, NOW + timedelta(seconds=5)
    )
    assert later.create is not None and later.create["metadata"]["name"] == "a-2"
    assert [msg for _, r, msg in later.events if r == "Restoring"] == [
        "attempt 2 (a-2) on spot nodes restores from the newest checkpoint on PVC ckpt, if any"
    ]


def test_the_first_attempt_of_a_pvc_job_is_just_created():
    out = plan(job(checkpoint=PVC), [], {}, False, NOW)
    assert [r for _, r, _ in out.events] == ["AttemptCreated"]


def test_an_s3_job_without_a_checkpoint_says_so():
    status = {"attempt": 1, "activePod": "a-1", "phase": "Running"}
    ended = ended_pod(1, "Succeeded", 0, disrupted=True, step=None)
    out = plan(job(status), [ended], {}, False, NOW)
    assert any(r == "Preempted" and "no checkpoint yet" in msg for _, r, msg in out.events)
