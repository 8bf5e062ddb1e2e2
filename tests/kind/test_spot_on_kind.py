"""A ResumableTrainingJob on kind's real kubelets survives a spot interruption done as a cloud
does it (hack/kind/preempt: interruption taint, notice, eviction with the grace period, the
node's container stopped and its Node deleted; hack/kind/add-node: the capacity comes back).

The operator is installed by `helm install` from the pushed operator image; the job is
manifests/examples/job.yaml and s3-secret.yaml submitted with `kubectl apply -f`, with these
values substituted: the trainer image (the pushed one), the checkpoint endpoint (the S3 server as
pods reach it, hack/kind/s3) and bucket, the Secret's two credentials, and two that make the
interruption land mid-training: --epochs 400 (the example's 20 epochs take ~20 s here, less
than its 60 s notice; attempt 2 must still be training when the test has seen its first
checkpoint and kills its node, which took ~13 s here and longer under CI's load: a CI run
with 100 epochs saw attempt 2's trainer finish, exit 0, just before the kill) and
SPOTRUN_SAVE_AT_ONCE=1 (save on SIGTERM instead of training on through the notice, as
tests/e2e's digits job does).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster.node import nodes
from spotrun import layout, reader
from spotrun.localstore import LocalStore
from spotrun_operator.podstate import container_status
from tests.kind.jobs import STEPS_PER_EPOCH, Job, committed_steps, hack, started
from tests.kind.kindenv import NAME, KindCluster, wait_for

pytestmark = [pytest.mark.kind, pytest.mark.timeout(3600)]

EPOCHS = 400
STEPS = EPOCHS * STEPS_PER_EPOCH


def test_workers_carry_the_process_nodes_labels_and_spot_taint(kind_cluster: KindCluster) -> None:
    listed = json.loads(kind_cluster.kubectl("get", "nodes", "-o", "json"))["items"]
    by_name = {n["metadata"]["name"]: n for n in listed}
    for name, capacity_type, zone in (
        (f"{NAME}-worker", nodes.ON_DEMAND, "local-a"),
        (f"{NAME}-worker2", nodes.SPOT, "local-b"),
    ):
        node = by_name[name]
        want = nodes.labels(name, capacity_type, zone)
        want.pop(nodes.PROCESS_NODE_LABEL)  # a real kubelet, not a process node
        labels = node["metadata"]["labels"]
        assert {k: labels.get(k) for k in want} == want, name
        taints = [
            {k: t.get(k) for k in ("key", "value", "effect")}
            for t in node["spec"].get("taints", [])
        ]
        assert taints == ([nodes.SPOT_TAINT] if capacity_type == nodes.SPOT else []), name


@pytest.fixture
def digits(
    kind_cluster: KindCluster,
    pushed: dict[str, str],
    kind_s3: dict[str, str],
    operator: None,
    tmp_path: Path,
) -> Iterator[Job]:
    """The example, running on the spot worker with a periodic checkpoint in S3."""
    with started(kind_cluster, kind_s3, pushed["trainer"], "digits-kind", tmp_path, EPOCHS) as d:
        yield d


def reference_run(cluster: KindCluster, image: str, workdir: Path) -> subprocess.Popen[bytes]:
    """The same training, uninterrupted, in a container of the same trainer image on the host's
    engine (the same torch build as the pods'); checkpoints in WORKDIR, its output in
    WORKDIR/../reference.log."""
    workdir.mkdir()
    workdir.chmod(0o777)  # the image's user (uid 1000) writes there
    with (workdir.parent / "reference.log").open("wb") as log:
        return subprocess.Popen(
            [
                "docker",
                "run",
                "--rm",
                "--network",
                "none",
                "-v",
                f"{workdir}:/reference",
                "-e",
                "SPOTRUN_CHECKPOINT_DIR=/reference",
                image,
                "python",
                "examples/digits/train.py",
                "--epochs",
                str(EPOCHS),
            ],
            env=cluster.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def test_the_digits_example_survives_a_notice_and_an_abrupt_loss_bit_identical(
    digits: Job,
    kind_cluster: KindCluster,
    built: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference = reference_run(kind_cluster, built["trainer"], tmp_path / "reference")

    # 1. a spot interruption with notice: taint, eviction with the grace period, node gone
    node = f"{NAME}-worker2"
    preempt = hack(kind_cluster, "preempt", node, "--notice", "5")
    assert f"node {node} is gone (container stopped, Node deleted)" in preempt, preempt
    assert node not in kind_cluster.kubectl("get", "nodes", "-o", "name")
    hack(kind_cluster, "add-node", node)  # the cloud brings capacity back
    ended = wait_for(
        "attempt 1's final save to be reported", lambda: digits.events("PreemptedAttemptEnded"), 300
    )
    assert len(ended) == 1 and "ended: its final save made it (step " in ended[0], ended
    saved = int(ended[0].rsplit("(step ", 1)[1].rstrip(")"))
    node = wait_for("digits-2 to run", lambda: digits.running_node("digits-2"), 900)
    # attempt 2 restores exactly the step attempt 1 saved on SIGTERM: 0 steps lost
    restored = "spotrun: restored step"
    log = wait_for("digits-2 to restore", lambda: digits.log_with("digits-2", restored), 300)
    assert f"spotrun: restored step {saved} " in log, log[-2000:]

    # 2. abrupt loss: the node's container killed, no notice, nothing saved at the end
    wait_for(
        "the status to name one of attempt 2's checkpoints",
        lambda: (digits.last_step() or 0) > saved,
        300,
    )
    trainer = (container_status(digits.pod("digits-2"), "trainer") or {}).get("state") or {}
    assert "running" in trainer, f"digits-2's trainer is not training any more: {trainer}"
    preempt = hack(kind_cluster, "preempt", node, "--abrupt")
    assert f"node {node} is gone (container killed, Node deleted)" in preempt, preempt
    newest = max(committed_steps(digits.s3, digits.prefix))  # nothing commits after the kill
    # the pod GC fails the orphaned pod: the operator counts a preemption, not a failure
    lost = wait_for(
        "the lost attempt to be counted",
        lambda: (st := digits.job()["status"]).get("preemptions") == 2 and st,
        300,
    )
    assert lost["failures"] == 0 and lost["attempt"] == 3, lost
    told = lost["lastCheckpoint"]["step"]
    assert saved < told <= newest and not lost["lastCheckpoint"].get("finalSaved"), lost
    (preempted,) = [c["message"] for c in lost["conditions"] if c["type"] == "Preempted"]
    assert f"node {node} gone" in preempted, preempted
    assert f"last checkpoint step {told} (no final save reported)" in preempted, preempted
    hack(kind_cluster, "add-node", node)

    status = digits.finished()
    assert status["phase"] == "Succeeded", status
    assert (status["preemptions"], status["failures"], status["attempt"]) == (2, 0, 3), status
    assert status["lastCheckpoint"]["step"] == STEPS
    # attempt 3 restores the newest periodic checkpoint in S3, whatever the status had seen
    log = digits.trainer_log("digits-3")
    assert f"spotrun: restored step {newest} " in log, log[-2000:]

    # the weights after two preemptions are the uninterrupted run's, bit for bit
    assert reference.wait(timeout=900) == 0, (tmp_path / "reference.log").read_text()[-2000:]
    want = reader.tensors_of(
        reader.load_verified(LocalStore(str(tmp_path / "reference")), layout.step_dirname(STEPS))
    )
    digits.assert_final_equals(STEPS, want, monkeypatch)
