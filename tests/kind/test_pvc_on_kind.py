"""Checkpoints on a ReadWriteMany PersistentVolumeClaim on kind's real kubelets (README,
"Storage"): the example digits job with `checkpoint.storage.pvc` instead of S3, on a static
hostPath PersistentVolume under the directory every worker mounts (hack/kind/up: the host's
<cluster state>/rwx at /mnt/spotrun-rwx, the same files on both nodes, as an NFS export is).

The job mounts only its own folder of the claim (`subPath: digits`), which the kubelet creates
with the mode of the volume's root: the root is writable for the trainer image's user (uid 1000),
as an export for non-root jobs must be. With `spot.fallbackToOnDemandAfter: 1`, attempt 1 runs
on the spot worker and attempt 2, after a spot interruption with notice, on the on-demand worker:
it restores, from the claim and on another node, the step attempt 1 saved at the SIGTERM.
"""

from __future__ import annotations

import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from spotrun import layout, reader
from spotrun.localstore import LocalStore
from tests.kind.jobs import (
    ON_DEMAND_WORKER,
    RESTORED,
    SPOT_WORKER,
    STEPS_PER_EPOCH,
    Job,
    example_job,
    hack,
)
from tests.kind.kindenv import RWX_PATH, KindCluster, run, wait_for

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800)]

NAMESPACE = "pvc-kind"
CLAIM = "checkpoints"
VOLUME = f"spotrun-rwx-{NAMESPACE}"
EPOCHS = 200  # 9000 steps: ~50 s of training here, so the notice lands mid-run
STEPS = EPOCHS * STEPS_PER_EPOCH
# "attempt 1 (digits-1) preempted (pod deleted); last checkpoint step 2409 on PVC checkpoints
# (final save made it); preemption 1 of at most 20"
SAVED = re.compile(rf"last checkpoint step (\d+) on PVC {CLAIM} \(final save made it\)")
TRAINER_UID = 1000  # the trainer image's user (trainer/Dockerfile)


@pytest.fixture
def volume(kind_cluster: KindCluster) -> Iterator[Path]:
    """A ReadWriteMany hostPath PersistentVolume on the shared directory, its root writable by
    the trainer's user; yields that root as the host sees it."""
    for node in (ON_DEMAND_WORKER, SPOT_WORKER):
        mounted = run("docker", "exec", node, "test", "-d", RWX_PATH, env=kind_cluster.env)
        assert mounted.returncode == 0, (
            f"{node} has no {RWX_PATH}: the cluster was made before hack/kind/up mounted it; "
            "recreate it (hack/kind/down, then hack/kind/up)"
        )
    root = kind_cluster.rwx / NAMESPACE
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    root.chmod(0o777)
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": VOLUME},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "",
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": f"{RWX_PATH}/{NAMESPACE}", "type": "Directory"},
        },
    }
    kind_cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(pv))
    try:
        yield root
    finally:
        kind_cluster.kubectl("delete", "pv", VOLUME, "--ignore-not-found", "--wait=false")
        shutil.rmtree(root, ignore_errors=True)


def manifests(trainer: str) -> str:
    """The claim, bound to VOLUME, and the example job checkpointing on it."""
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": CLAIM},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "",
            "volumeName": VOLUME,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    job = example_job(trainer, EPOCHS)
    job["spec"]["checkpoint"]["storage"] = {"pvc": {"claimName": CLAIM}}
    job["spec"]["spot"]["fallbackToOnDemandAfter"] = 1
    return yaml.safe_dump_all([claim, job])


def steps_on(folder: Path) -> list[int]:
    """Steps whose MANIFEST is in the job's folder of the claim."""
    found = folder.glob(f"{layout.CHECKPOINTS}/*/{layout.MANIFEST}")
    return sorted(s for p in found if (s := layout.parse_step_dirname(p.parent.name)))


@pytest.fixture
def digits(
    kind_cluster: KindCluster,
    pushed: dict[str, str],
    operator: None,
    volume: Path,
    tmp_path: Path,
) -> Iterator[Job]:
    job = Job(kind_cluster, {}, NAMESPACE)
    (tmp_path / "pvc.yaml").write_text(manifests(pushed["trainer"]))
    kind_cluster.kubectl("create", "namespace", NAMESPACE)
    try:
        job.k("apply", "-f", str(tmp_path / "pvc.yaml"))
        yield job
    finally:
        kind_cluster.delete_namespace(NAMESPACE)


def test_checkpoints_on_a_readwritemany_claim_are_restored_on_another_node(
    digits: Job, kind_cluster: KindCluster, volume: Path
) -> None:
    node = wait_for("digits-1 to run", lambda: digits.running_node("digits-1"), 900)
    assert node == SPOT_WORKER
    folder = volume / digits.name  # the job's sub-path, made by the spot worker's kubelet
    wait_for("a periodic checkpoint on the claim", lambda: steps_on(folder), 300)
    # the kubelet made the job's folder as root, with the mode of the claim's root: what lets a
    # non-root trainer write there is that root's mode (README, "Storage")
    made = folder.stat()
    assert (made.st_uid, stat.S_IMODE(made.st_mode)) == (0, 0o777), oct(made.st_mode)
    # nothing to upload: the sidecar reports the newest step on the claim, the status shows it
    live = wait_for("the status to show a step", digits.last_step, 120)
    assert 0 < live <= max(steps_on(folder)), (live, steps_on(folder))

    preempt = hack(kind_cluster, "preempt", SPOT_WORKER, "--notice", "5")
    assert f"node {SPOT_WORKER} is gone" in preempt, preempt
    # no warm start on a claim: attempt 2 starts once attempt 1's pod has ended and its save is
    # on the claim, and the Event says which step
    (preempted,) = wait_for("the preemption Event", lambda: digits.events("Preempted"), 300)
    found = SAVED.search(preempted)
    assert found, preempted
    saved = int(found[1])
    assert saved in steps_on(folder), (saved, steps_on(folder))
    # attempt 2, on the other node, restores that save from the claim: 0 steps lost (read from
    # its log, not while it runs: the ~6600 steps left can be done in ~20 s)
    log = wait_for("digits-2 to restore", lambda: digits.log_with("digits-2", RESTORED), 600)
    assert f"{RESTORED} {saved} " in log, log[-2000:]
    assert digits.pod("digits-2")["spec"]["nodeName"] == ON_DEMAND_WORKER
    (restoring,) = [e for e in digits.events("Restoring") if "attempt 2 " in e]
    assert f"on PVC {CLAIM}" in restoring, restoring
    hack(kind_cluster, "add-node", SPOT_WORKER)

    status: dict[str, Any] = digits.finished()
    assert status["phase"] == "Succeeded", status
    assert (status["preemptions"], status["failures"], status["attempt"]) == (1, 0, 2), status
    assert status["lastCheckpoint"]["step"] == STEPS, status
    # the final checkpoint is on the shared volume, written by the trainer's user, and loads
    final = layout.step_dirname(STEPS)
    assert reader.tensors_of(reader.load_verified(LocalStore(str(folder)), final))
    owners = {p.stat().st_uid for p in (folder / layout.CHECKPOINTS / final).rglob("*")}
    assert owners == {TRAINER_UID}, owners
