"""Checkpoints on a PersistentVolumeClaim (a ReadWriteMany volume, as NFS on premises) instead
of S3: the sidecar only reports (nothing to sync), so the job's status shows the newest step
live, the next attempt restores from the volume and its Event names the step."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import IMAGE, read_pod, wait_for
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from operator_support import events_once
from test_operator_digits import ARGS, PLURAL, get_job, running_on
from test_operator_retries import finished

from spotrun import layout, reader
from spotrun.localstore import LocalStore

pytestmark = pytest.mark.e2e

EPOCHS = 100  # 4500 steps (~20 s on a quiet core): still training when the status shows step 100


@pytest.fixture
def claim(cluster: Any, namespace: str, tmp_path: Path) -> Iterator[Path]:
    """A static ReadWriteMany hostPath PersistentVolume bound to the claim ``checkpoints``;
    yields the volume's host directory."""
    core = cluster.core()
    directory = tmp_path / "pv"
    directory.mkdir()
    pv = f"checkpoints-{namespace}"
    core.create_persistent_volume({
        "metadata": {"name": pv},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                 "storageClassName": "", "persistentVolumeReclaimPolicy": "Retain",
                 "hostPath": {"path": str(directory), "type": "Directory"}},
    })
    core.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": "checkpoints"},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": pv,
                 "resources": {"requests": {"storage": "1Gi"}}},
    })
    wait_for(lambda: core.read_namespaced_persistent_volume_claim("checkpoints", namespace)
             .status.phase == "Bound", "the claim to be bound", timeout=60)
    try:
        yield directory
    finally:
        try:
            core.delete_persistent_volume(pv)
        except ApiException as err:
            if err.status != 404:
                raise


def committed_steps(root: Path) -> list[int]:
    folder = root / layout.CHECKPOINTS
    names = [p.parent.name for p in folder.glob(f"*/{layout.MANIFEST}")] if folder.is_dir() else []
    return sorted(s for n in names if (s := layout.parse_step_dirname(n)) is not None)


def test_checkpoints_on_a_pvc_survive_a_preemption(
    cluster, namespace, operator, process_node, claim
):
    core, custom = cluster.core(), client.CustomObjectsApi(cluster.api)
    custom.create_namespaced_custom_object(*ARGS, namespace, PLURAL, {
        "apiVersion": "spotrun.dev/v1alpha1", "kind": "ResumableTrainingJob",
        "metadata": {"name": "pvc"},
        "spec": {
            "template": {"spec": {"containers": [{
                "name": "trainer", "image": IMAGE,
                "command": ["python", "examples/digits/train.py", "--epochs", str(EPOCHS)],
            }]}},
            "checkpoint": {"storage": {"pvc": {"claimName": "checkpoints"}},
                           "sidecarPort": 18700},
            "terminationGracePeriodSeconds": 30,
        },
    })
    node = wait_for(lambda: running_on(core, namespace, "pvc-1"), "pvc-1 to run", timeout=120)
    pod = read_pod(core, namespace, "pvc-1")
    (sidecar,) = pod.spec.init_containers  # reports the volume's newest step, syncs nothing
    assert {e.name: e.value for e in sidecar.env}["SPOTRUN_SIDECAR_MODE"] == "report"
    assert not [e.name for e in sidecar.env if e.name.startswith(("AWS_", "SPOTRUN_STORAGE"))]
    assert [v.persistent_volume_claim.claim_name for v in pod.spec.volumes
            if v.persistent_volume_claim] == ["checkpoints"]

    def live_step() -> int | None:
        status = get_job(custom, namespace, "pvc").get("status") or {}
        step = (status.get("lastCheckpoint") or {}).get("step")
        return step if step is not None and step >= 100 else None

    seen = wait_for(live_step, "status.lastCheckpoint.step past 100 while Running", timeout=120)
    own = claim / "pvc"  # the job's own sub-path of the claim
    assert seen <= committed_steps(own)[-1]  # a step the volume holds (or held: keep=3)
    running = get_job(custom, namespace, "pvc")["status"]
    assert running["phase"] == "Running" and running["progress"].startswith("step "), running
    process_node.preempt(node)
    process_node.add_node("spot")

    done = wait_for(lambda: finished(custom, namespace, "pvc"), "the job to finish", timeout=180)
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert (status["preemptions"], status["failures"], status["attempt"]) == (1, 0, 2)

    saved = re.search(r"step (\d+) is durable; exiting 0", process_node.log(namespace, "pvc-1",
                                                                            "trainer"))
    assert saved, process_node.log(namespace, "pvc-1", "trainer")[-2000:]
    step = int(saved.group(1))
    assert 100 <= step < EPOCHS * 45
    second = process_node.log(namespace, "pvc-2", "trainer")
    assert f"restored step {step} " in second, second[-2000:]

    final = EPOCHS * 45
    assert committed_steps(own)[-1] == final
    newest = reader.newest_valid(LocalStore(str(own)))
    assert newest is not None and newest.step == final  # every file matches its manifest
    assert status["lastCheckpoint"]["step"] == final, status
    assert status["progress"].startswith(f"step {final}"), status
    events = events_once(core, namespace, "pvc", {"Preempted": 1, "Restoring": 1})
    preempted = [m for r, m in events if r == "Preempted"]
    assert len(preempted) == 1, events
    assert f"last checkpoint step {step} on PVC checkpoints (final save made it)" in preempted[0]
    assert [m for r, m in events if r == "Restoring"] == [
        f"attempt 2 (pvc-2) on spot nodes restores from step {step} on PVC checkpoints"], events
