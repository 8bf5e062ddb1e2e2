"""The operator's runtime features as pure functions: live progress, ttlSecondsAfterFinished,
the checkpoint-cleanup pod and its retries, an immediate replacement without backoff, the
metrics text, and the generated reference."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from spotrun_operator import cleanup, decisions, live, reference
from spotrun_operator.builders import desired_pod
from spotrun_operator.decisions import plan, progress_text
from spotrun_operator.metrics import Metrics, phase_counts
from tests.unit.operator.test_decisions import NODE, NOW, ended_pod, job

pytestmark = pytest.mark.unit

REFERENCE_MD = Path(__file__).resolve().parents[3] / "docs" / "reference.md"


def running_pod(attempt: int = 1, **spec: Any) -> dict[str, Any]:
    pod = desired_pod(job(**spec), attempt, on_demand=False, gpus_available=False)
    pod["spec"]["nodeName"] = "spot-1"
    pod["status"] = {"phase": "Running", "podIP": "10.0.0.7", "startTime": "2026-01-01T11:00:00Z"}
    return pod


RUNNING = {"phase": "Running", "attempt": 1, "activePod": "a-1", "startTime": "2026-01-01T11:00Z"}


def report(step: int, epoch: int = 3, loss: float = 0.1234567) -> dict[str, Any]:
    return {
        "step": step,
        "epoch": epoch,
        "time": "2026-01-01T11:59:00+00:00",
        "uri": f"s3://bucket/jobs/a/checkpoints/step-{step:012d}",
        "metrics": {"loss": loss, "accuracy": 0.9},
    }


def test_live_report_of_a_running_attempt_moves_progress_and_last_checkpoint():
    out = plan(job(RUNNING), [running_pod()], {"spot-1": NODE}, False, NOW, live=report(450))
    assert out.status.progress == "step 450 (epoch 3), loss 0.1235, accuracy 0.9"
    ref = out.status.lastCheckpoint
    assert ref is not None
    assert (ref.step, ref.epoch, ref.uri, ref.time) == (
        450,
        3,
        "s3://bucket/jobs/a/checkpoints/step-000000000450",
        "2026-01-01T11:59:00+00:00",
    )
    assert out.requeue_after == decisions.PROGRESS_SECONDS  # asked again soon


def test_live_progress_never_goes_back_and_keeps_what_an_end_recorded():
    status = {
        **RUNNING,
        "lastCheckpoint": {"step": 500, "uri": "s3://x", "finalSaved": True},
        "progress": "step 500",
    }
    older = plan(job(status), [running_pod()], {"spot-1": NODE}, False, NOW, live=report(450))
    assert older.status.lastCheckpoint is not None
    assert older.status.lastCheckpoint.step == 500 and older.status.progress == "step 500"
    same = plan(job(status), [running_pod()], {"spot-1": NODE}, False, NOW, live=report(500))
    assert same.status.lastCheckpoint is not None
    assert same.status.lastCheckpoint.finalSaved is True  # the restored step keeps its record
    assert same.status.progress == "step 500 (epoch 3), loss 0.1235, accuracy 0.9"


def test_no_report_or_a_report_without_a_checkpoint_changes_nothing():
    for answer in (None, {}, {"step": None}, "garbage"):
        out = plan(job(RUNNING), [running_pod()], {"spot-1": NODE}, False, NOW, live=answer)
        assert out.status.lastCheckpoint is None and out.status.progress is None


def test_progress_text_without_epoch_or_metrics():
    assert progress_text(7, None, {}) == "step 7"
    assert progress_text(7, 0, {"acc": 0.5}) == "step 7 (epoch 0), acc 0.5"


def test_sidecar_url_of_a_running_pod_uses_its_ip_and_sidecar_port():
    pod = running_pod(checkpoint={"storage": {"uri": "s3://bucket/a"}, "sidecarPort": 18601})
    assert live.sidecar_url(pod, 8471) == "http://10.0.0.7:18601/status"
    pod["status"]["phase"] = "Pending"
    assert live.sidecar_url(pod, 8471) is None
    pvc = running_pod(checkpoint={"storage": {"pvc": {"claimName": "ckpt"}}})
    assert live.sidecar_url(pvc, 8471) == "http://10.0.0.7:8471/status"  # its report sidecar


def test_an_end_carries_epoch_and_loss_from_the_termination_message():
    pod = ended_pod(1, "Failed", 143, disrupted=True)
    message = '{"step":40,"epoch":2,"uri":"s3://b/x","metrics":{"loss":0.5},"finalSaved":true}'
    pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["message"] = message
    out = plan(job(RUNNING), [pod], {"spot-1": NODE}, False, NOW)
    assert out.status.progress == "step 40 (epoch 2), loss 0.5"
    assert out.status.lastCheckpoint is not None and out.status.lastCheckpoint.finalSaved


def test_without_backoff_the_pass_that_sees_a_preemption_creates_the_next_pod():
    pod = ended_pod(1, "Failed", 143, disrupted=True)
    out = plan(job(RUNNING, spot={"backoffSeconds": 0}), [pod], {"spot-1": NODE}, False, NOW)
    assert out.ended is not None and out.ended.outcome is decisions.Outcome.PREEMPTED
    assert out.create is not None and out.create["metadata"]["name"] == "a-2"
    assert out.status.attempt == 2 and out.status.activePod == "a-2"
    assert out.release == ["a-1"]
    with_backoff = plan(job(RUNNING), [pod], {"spot-1": NODE}, False, NOW)
    assert with_backoff.create is None and with_backoff.requeue_after == 1.0


def finished(seconds_ago: float, ttl: int | None) -> Any:
    status = {
        "phase": "Succeeded",
        "attempt": 1,
        "completionTime": decisions.ts(NOW - timedelta(seconds=seconds_ago)),
    }
    return plan(job(status, ttlSecondsAfterFinished=ttl), [], {}, False, NOW)


def test_ttl_deletes_a_finished_job_once_it_has_run_out():
    waiting = finished(4, 10)
    assert not waiting.delete_job and waiting.requeue_after == pytest.approx(6)
    assert finished(10, 10).delete_job
    assert finished(0, 0).delete_job
    assert not finished(3600, None).delete_job
    running = plan(job(RUNNING, ttlSecondsAfterFinished=0), [running_pod()], {}, False, NOW)
    assert not running.delete_job


def test_cleanup_finalizer_follows_the_spec():
    assert cleanup.finalizer_change(True, ["other"]) == "add"
    assert cleanup.finalizer_change(True, [cleanup.FINALIZER]) is None
    assert cleanup.finalizer_change(False, [cleanup.FINALIZER, "other"]) == "remove"
    assert cleanup.finalizer_change(False, []) is None


def test_cleanup_pod_for_s3_has_the_sidecars_credentials_and_no_spot_placement():
    pod = cleanup.cleanup_pod(
        job(
            checkpoint={
                "storage": {
                    "uri": "s3://bucket/jobs/a",
                    "endpoint": "http://s3:9000",
                    "secretRef": {"name": "c"},
                },
                "sidecarImage": "spotrun:1",
            }
        ),
        2,
    )
    assert pod["metadata"]["name"] == "a-cleanup-2"
    assert pod["metadata"]["labels"] == {cleanup.LABEL_CLEANUP: "a"}
    assert "ownerReferences" not in pod["metadata"]
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never" and "tolerations" not in spec
    (container,) = spec["containers"]
    assert container["image"] == "spotrun:1"
    assert container["command"] == ["spotrun", "purge", "s3://bucket/jobs/a"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env == {
        "SPOTRUN_STORAGE_URI": "s3://bucket/jobs/a",
        "SPOTRUN_JOB": "a",
        "SPOTRUN_NAMESPACE": pod["metadata"]["namespace"],
        "AWS_ENDPOINT_URL_S3": "http://s3:9000",
        "AWS_ACCESS_KEY_ID": {"secretKeyRef": {"name": "c", "key": "AWS_ACCESS_KEY_ID"}},
        "AWS_SECRET_ACCESS_KEY": {"secretKeyRef": {"name": "c", "key": "AWS_SECRET_ACCESS_KEY"}},
    }


def test_cleanup_pod_for_a_pvc_mounts_the_claim_where_the_trainer_has_it():
    pod = cleanup.cleanup_pod(
        job(checkpoint={"storage": {"pvc": {"claimName": "ckpt"}}, "path": "/data/ck"}), 1
    )
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["spotrun", "purge", "/data/ck"]
    assert [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]] == ["ckpt"]
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/data/ck"]


def cleanup_pod_in(phase: str, attempt: int, message: str = "") -> dict[str, Any]:
    pod = cleanup.cleanup_pod(job(), attempt)
    terminated = {"exitCode": 1, "message": message} if phase == "Failed" else {"exitCode": 0}
    pod["status"] = {
        "phase": phase,
        "containerStatuses": [{"name": "cleanup", "state": {"terminated": terminated}}],
    }
    return pod


def test_cleanup_waits_for_attempts_then_creates_the_first_try():
    assert cleanup.plan_cleanup(job(), True, []).create is None
    first = cleanup.plan_cleanup(job(), False, [])
    assert first.create is not None and first.create["metadata"]["name"] == "a-cleanup-1"
    assert not first.release and not first.events


def test_cleanup_success_releases_the_job_and_deletes_the_pod():
    done = cleanup.plan_cleanup(job(), False, [cleanup_pod_in("Succeeded", 1)])
    assert done.release and done.delete == ["a-cleanup-1"]
    assert done.events == [
        ("Normal", cleanup.REASON_DELETED, "deleted the checkpoints under s3://bucket/jobs/a")
    ]


def test_cleanup_retries_a_failure_then_gives_up_naming_the_leftover_prefix():
    failed = [cleanup_pod_in("Failed", 1, "AccessDenied")]
    retry = cleanup.plan_cleanup(job(), False, failed)
    assert retry.create is not None and retry.create["metadata"]["name"] == "a-cleanup-2"
    assert not retry.release
    assert retry.events[0][:2] == ("Warning", cleanup.REASON_FAILED)
    assert "AccessDenied" in retry.events[0][2] and "try 2 of 3" in retry.events[0][2]
    running = cleanup.plan_cleanup(job(), False, [*failed, cleanup_pod_in("Running", 2)])
    assert running.create is None and not running.release
    three = [cleanup_pod_in("Failed", n, "AccessDenied") for n in (1, 2, 3)]
    gave_up = cleanup.plan_cleanup(job(), False, three)
    assert gave_up.create is None and gave_up.release
    assert gave_up.delete == ["a-cleanup-1", "a-cleanup-2", "a-cleanup-3"]
    (kind, reason, message) = gave_up.events[0]
    assert (kind, reason) == ("Warning", cleanup.REASON_ABANDONED)
    assert "leftover checkpoints remain under s3://bucket/jobs/a" in message


def test_metrics_text_has_phases_counters_and_latencies():
    metrics = Metrics()
    metrics.job_seen(("ns", "a"), "Running")
    metrics.job_seen(("ns", "b"), "Running")
    metrics.job_seen(("ns", "c"), "Pending")
    metrics.job_gone(("ns", "c"))
    metrics.recorded(("ns", "a"), 1, 0, seen_at=100.0)
    metrics.recorded(("ns", "b"), 0, 1, seen_at=100.0)
    metrics.replaced(("ns", "a"), created_at=100.25)
    metrics.replaced(("ns", "zzz"), created_at=100.0)  # no end seen: nothing to observe
    metrics.reconcile.observe(0.02)
    text = metrics.text().decode()
    assert 'spotrun_jobs{phase="Running"} 2.0' in text
    assert 'spotrun_jobs{phase="Pending"} 0.0' in text
    assert "spotrun_preemptions_total 1.0" in text
    assert "spotrun_failures_total 1.0" in text
    assert "spotrun_reaction_seconds_count 1.0" in text
    assert "spotrun_reaction_seconds_sum 0.25" in text
    assert "spotrun_reconcile_duration_seconds_count 1.0" in text
    assert "process_resident_memory_bytes" in text


def test_phase_counts_list_every_phase():
    assert phase_counts(["Running", "Running", "Failed"]) == {
        "Pending": 0,
        "Running": 2,
        "Restarting": 0,
        "Suspended": 0,
        "Succeeded": 0,
        "Failed": 1,
    }


def test_committed_reference_matches_the_models():
    assert REFERENCE_MD.read_text() == reference.render(), (
        "docs/reference.md is stale: run `make crd` and commit the result"
    )


def test_reference_lists_every_field_with_its_default_and_validation():
    text = reference.render()
    for path in (
        "spec.checkpoint.deleteOnJobDeletion",
        "spec.ttlSecondsAfterFinished",
        "spec.spot.backoffSeconds",
        "status.lastCheckpoint.step",
        "status.progress",
    ):
        assert f"| `{path}` |" in text, path
    row = next(line for line in text.splitlines() if "`spec.checkpoint.keep`" in line)
    assert "`3`" in row and ">= 1; <= 1000" in row
