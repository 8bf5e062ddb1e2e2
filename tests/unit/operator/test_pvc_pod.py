"""The pod of a job whose checkpoints are on a PVC: the claim is mounted at the checkpoint path
for the trainer and for a report-mode sidecar (no S3 variables, nothing to restore), so the
operator can read the newest step live and from the sidecar's termination message."""

from __future__ import annotations

from typing import Any

import pytest

from spotrun_operator import builders, live
from spotrun_operator.builders import desired_pod
from spotrun_operator.cleanup import cleanup_pod
from tests.unit.operator.test_decisions import job

pytestmark = pytest.mark.unit

# A PVC job whose spec still names an S3 endpoint: it must not reach the sidecar.
PVC = {
    "storage": {"pvc": {"claimName": "nfs"}, "endpoint": "http://s3:9000"},
    "path": "/data/ckpt",
    "sidecarPort": 18790,
}


def pvc_pod() -> dict[str, Any]:
    return desired_pod(job(checkpoint=PVC), 1, on_demand=False, gpus_available=False)


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or []}


def test_the_claim_is_the_checkpoint_volume_of_the_trainer_and_the_sidecar():
    spec = pvc_pod()["spec"]
    assert spec["volumes"] == [
        {"name": builders.VOLUME, "persistentVolumeClaim": {"claimName": "nfs"}}
    ]
    sidecar, trainer = spec["initContainers"][0], spec["containers"][0]
    mount = {"name": builders.VOLUME, "mountPath": "/data/ckpt", "subPath": "a"}
    assert mount in trainer["volumeMounts"] and sidecar["volumeMounts"] == [mount]


def test_the_sidecar_reports_without_any_s3_settings():
    sidecar = pvc_pod()["spec"]["initContainers"][0]
    assert (sidecar["name"], sidecar["restartPolicy"]) == (builders.SIDECAR, "Always")
    assert sidecar["command"] == ["spotrun", "sidecar"]
    env = env_of(sidecar)
    assert env["SPOTRUN_SIDECAR_MODE"] == "report"
    assert (env["SPOTRUN_CHECKPOINT_DIR"], env["SPOTRUN_SIDECAR_PORT"]) == ("/data/ckpt", "18790")
    assert not [n for n in env if n.startswith(("AWS_", "SPOTRUN_STORAGE"))], env
    assert sidecar["terminationMessagePolicy"] == "File"  # the operator reads the last step


def test_the_trainer_is_not_told_a_sidecar_uploads():
    env = env_of(pvc_pod()["spec"]["containers"][0])
    assert "SPOTRUN_UPLOAD" not in env and "SPOTRUN_STORAGE_URI" not in env


def test_the_report_sidecar_lets_the_trainer_start_as_soon_as_it_listens():
    """Nothing to restore: its startup probe gives up after seconds, not the 10 minutes an S3
    restore may take."""
    report = pvc_pod()["spec"]["initContainers"][0]["startupProbe"]
    s3 = desired_pod(job(), 1, on_demand=False, gpus_available=False)["spec"]["initContainers"][0]
    assert report["httpGet"] == {"path": "/startupz", "port": 18790}
    assert report["periodSeconds"] * report["failureThreshold"] <= 30
    # an S3 sidecar has none: the trainer starts beside it and waits in Checkpointer.restore()
    assert "startupProbe" not in s3
    assert "SPOTRUN_SIDECAR_MODE" not in env_of(s3)


def test_the_operator_asks_the_pvc_sidecar_for_live_progress():
    pod = pvc_pod()
    pod["status"] = {"phase": "Running", "podIP": "10.0.0.7"}
    assert live.sidecar_url(pod, 8471) == "http://10.0.0.7:18790/status"


def test_the_cleanup_pod_mounts_only_the_claim_at_the_checkpoint_path():
    pod = cleanup_pod(job(checkpoint=PVC), 1)
    assert pod["metadata"] == {
        "name": "a-cleanup-1",
        "namespace": "ns",
        "labels": {"spotrun.dev/cleanup-of": "a"},
    }
    (container,) = pod["spec"]["containers"]
    assert pod["spec"]["volumes"] == [
        {"name": builders.VOLUME, "persistentVolumeClaim": {"claimName": "nfs"}}
    ]
    assert container["volumeMounts"] == [
        {"name": builders.VOLUME, "mountPath": "/data/ckpt", "subPath": "a"}
    ]  # the job's own folder of the claim: the purge empties nothing of another job
    assert container["command"] == ["spotrun", "purge", "/data/ckpt"]
    assert not [e for e in container["env"] if e["name"].startswith("AWS_")]
