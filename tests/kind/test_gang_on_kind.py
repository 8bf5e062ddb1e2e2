"""A multi-node gang on kind's real pod network (README "Multi-node"): examples/ddp as 2 pods x 2
torchrun workers (world size 4, gloo), one pod per node, the rendezvous through the operator's
headless Service and CoreDNS, each pod's sidecar uploading its node's part to the S3 server.

The job is manifests/examples/multinode.yaml submitted with `kubectl apply -f`, with the values
of jobs.multinode_manifests substituted (the image, S3, SPOTRUN_SAVE_AT_ONCE=1, 250m CPU, both
workers as spot capacity: a gang needs one node per pod) and the training arguments --epochs 10
--save-every 10 --step-delay 0.25 (a few minutes of training, checkpoints every 10 steps).

One job, three attempts:
1. the spot worker preempted with a 5 s notice (hack/kind/preempt), capacity back (add-node):
   every rank saves the same step S, committed only when both nodes' parts are in S3 (the
   manifest names world size 4 and the reason `preemption`); all 4 ranks of attempt 2 restore S;
2. one rank of attempt 2 SIGKILLed (`kubectl exec` in its pod; no save): a failure, charged to
   backoffLimit; all 4 ranks of attempt 3 restore the newest checkpoint committed in S3;
3. Succeeded, and the final weights equal, bit for bit, those of the same script run
   uninterrupted as 2 torchruns x 2 processes in one container of the same image.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from spotrun import layout, reader
from spotrun.localstore import LocalStore
from spotrun_operator.podstate import container_status
from tests.integration.test_gang_resume import restore_like_the_sidecar
from tests.kind.jobs import (
    RESTORED,
    SPOT_WORKER,
    Job,
    committed_steps,
    gang_started,
    hack,
    multinode_manifests,
    s3_client,
)
from tests.kind.kindenv import KindCluster, wait_for

pytestmark = [pytest.mark.kind, pytest.mark.timeout(3600)]

EPOCHS = 10
STEPS = EPOCHS * 23  # 1437 training samples in global batches of 4 ranks x 16
ARGS = ["--epochs", str(EPOCHS), "--save-every", "10"]
NAMESPACE = "gang-kind"


@pytest.fixture
def gang(
    kind_cluster: KindCluster,
    pushed: dict[str, str],
    kind_s3: dict[str, str],
    operator: None,
    tmp_path: Path,
) -> Iterator[Job]:
    """The gang running on both workers with a checkpoint committed (jobs.gang_started)."""
    args = [*ARGS, "--step-delay", "0.25"]
    with gang_started(
        kind_cluster,
        kind_s3,
        NAMESPACE,
        tmp_path,
        lambda prefix: multinode_manifests(pushed["trainer"], kind_s3, prefix, args),
    ) as job:
        yield job


def restored(job: Job, attempt: int) -> list[str]:
    """The `restored step` lines of both pods of ATTEMPT (one per rank), once all 4 are there."""
    lines = [
        line
        for rank in (0, 1)
        for line in job.trainer_log(f"digits-ddp-{attempt}-{rank}").splitlines()
        if RESTORED in line
    ]
    return lines if len(lines) == 4 else []


def restored_step(lines: list[str]) -> int:
    steps = {int(line.split(RESTORED, 1)[1].split()[0]) for line in lines}
    assert len(steps) == 1, f"the ranks restored different steps: {lines}"
    return steps.pop()


def manifest(job: Job, step: int) -> dict[str, Any]:
    """The committed MANIFEST.json of STEP, as stored."""
    key = f"{job.prefix}/{layout.CHECKPOINTS}/{layout.step_dirname(step)}/{layout.MANIFEST}"
    got = s3_client(job.s3).get_object(Bucket=job.s3["SPOTRUN_TEST_BUCKET"], Key=key)
    found: dict[str, Any] = json.loads(got["Body"].read())
    return found


def kill_rank(job: Job, pod: str, rank: int) -> None:
    """SIGKILL the torchrun worker of global RANK in POD, from inside its trainer container."""
    script = (
        "import os, signal\n"
        "for p in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try:\n"
        "        env = open(f'/proc/{p}/environ', 'rb').read().split(b'\\0')\n"
        "        cmd = open(f'/proc/{p}/cmdline', 'rb').read()\n"
        "    except OSError:\n"
        "        continue\n"
        f"    if b'RANK={rank}' in env and b'train.py' in cmd and b'torchrun' not in cmd:\n"
        "        os.kill(int(p), signal.SIGKILL); print('killed', p)\n"
    )
    out = job.k("exec", pod, "-c", "trainer", "--", "python", "-c", script)
    assert out.count("killed") == 1, f"rank {rank} in {pod}: {out!r}"


def reference_run(cluster: KindCluster, image: str, base: Path) -> dict[str, torch.Tensor]:
    """The same training uninterrupted (no step delay: it changes no number), 2 torchruns x 2
    processes on one container's loopback, node k's checkpoints in BASE/node-k; the final
    checkpoint's tensors once node 1's files are beside node 0's, as the sidecars put them."""
    base.mkdir()
    base.chmod(0o777)  # the image's user (uid 1000) writes there
    node = (
        "SPOTRUN_CHECKPOINT_DIR=/ref/node-{k} SPOTRUN_NNODES=2 SPOTRUN_NODE_RANK={k} "
        "SPOTRUN_NPROC_PER_NODE=2 OMP_NUM_THREADS=1 torchrun --nnodes=2 --nproc-per-node=2 "
        "--node-rank={k} --master-addr=127.0.0.1 --master-port=29500 examples/ddp/train.py "
        + " ".join(ARGS)
    )
    script = (
        f"{node.format(k=0)} & zero=$!; {node.format(k=1)}; one=$?; wait $zero; exit $(($? | one))"
    )
    done = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            f"{base}:/ref",
            image,
            "sh",
            "-c",
            script,
        ],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    restore_like_the_sidecar(base, 2)
    store = LocalStore(str(base / "node-0"))
    return reader.tensors_of(reader.load_verified(store, layout.step_dirname(STEPS)))


def test_a_gang_survives_a_preempted_node_and_a_killed_rank_bit_identical(
    gang: Job,
    kind_cluster: KindCluster,
    built: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 1. the spot worker preempted with notice: every rank saves one step, the gang resumes it
    hack(kind_cluster, "preempt", SPOT_WORKER, "--notice", "5")
    hack(kind_cluster, "add-node", SPOT_WORKER)  # the cloud brings capacity back
    lines = wait_for("attempt 2's 4 ranks to restore", lambda: restored(gang, 2), 900)
    saved = restored_step(lines)
    assert 10 <= saved < STEPS, lines
    found = manifest(gang, saved)
    assert (found["reason"], found["world"]["world_size"]) == ("preemption", 4), found
    status = gang.status()
    assert (status["preemptions"], status["failures"], status["attempt"]) == (1, 0, 2), status
    preempted = gang.events("Preempted")  # names the rank that ran on the spot worker
    assert len(preempted) == 1 and f"on node {SPOT_WORKER})" in preempted[0], preempted

    # 2. a rank of attempt 2 SIGKILLed, no save: a failure; the gang restarts from S3's newest
    wait_for(
        "attempt 2 to commit a checkpoint",
        lambda: max(committed_steps(gang.s3, gang.prefix)) > saved,
        600,
    )
    trainer = (container_status(gang.pod("digits-ddp-2-1"), "trainer") or {}).get("state") or {}
    assert "running" in trainer, f"attempt 2 is not training any more: {trainer}"
    kill_rank(gang, "digits-ddp-2-1", 3)
    failed = wait_for(
        "the failure to be counted", lambda: (st := gang.status()).get("failures") == 1 and st, 600
    )
    assert (failed["preemptions"], failed["attempt"]) == (1, 3), failed
    newest = max(committed_steps(gang.s3, gang.prefix))  # nothing commits after the kill
    lines = wait_for("attempt 3's 4 ranks to restore", lambda: restored(gang, 3), 900)
    assert restored_step(lines) == newest > saved, lines

    status = gang.finished()
    assert status["phase"] == "Succeeded", status
    assert (status["preemptions"], status["failures"], status["attempt"]) == (1, 1, 3), status
    history = [(h["attempt"], h.get("outcome"), h["worldSize"]) for h in status["gangHistory"]]
    assert history == [(1, "Preempted", 4), (2, "Failed", 4), (3, "Succeeded", 4)], history
    assert status["lastCheckpoint"]["step"] == STEPS
    failed_events = gang.events("AttemptFailed")
    assert len(failed_events) == 1 and "retry 1 of 2" in failed_events[0], failed_events

    # 3. after a preemption and a crash, the weights are the uninterrupted run's, bit for bit
    want = reference_run(kind_cluster, built["trainer"], tmp_path / "reference")
    gang.assert_final_equals(STEPS, want, monkeypatch)
