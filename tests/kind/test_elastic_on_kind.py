"""spec.nodes {min: 1, max: 2} on kind's real kubelets (README "Fewer nodes when spot is short"):
the multinode example's gang (2 pods x 2 torchrun workers) loses the spot worker and no capacity
comes back, so attempt 2's second pod cannot be scheduled: after shrinkAfterSeconds attempt 2 ends
as Shrunk and attempt 3 runs on the one node left at world size 2, from the checkpoint saved at
world size 4. Capacity returns and attempt 3's pod is evicted (the Eviction API, as a drain or
Karpenter's consolidation does it): attempt 4 asks for 2 nodes again and gets them. Across both
changes of world size no sample of an epoch is skipped or seen twice: each rank writes the sample
ids of its steps (examples/ddp/train.py --trace) into a host directory every worker mounts
(KindCluster.rwx), read here once the job has Succeeded.

The job is manifests/examples/multinode.yaml with jobs.multinode_manifests' values, spec.nodes
{min: 1, max: 2, shrinkAfterSeconds: 10} and the training arguments --epochs 3 --save-every 5
--step-delay 1 (a step a second: attempt 3 still trains when capacity is back).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kind.jobs import (
    ON_DEMAND_WORKER,
    SPOT_WORKER,
    Job,
    gang_started,
    hack,
    multinode_manifests,
)
from tests.kind.kindenv import RWX_PATH, KindCluster, wait_for

pytestmark = [pytest.mark.kind, pytest.mark.timeout(3600)]

EPOCHS = 3
SAMPLES = 1437  # the digits training split
NAMESPACE = "elastic-kind"
TRACE = "/trace"  # in the trainer container


def elastic_manifests(trainer: str, s3: dict[str, str], prefix: str, trace_dir: str) -> str:
    """The multinode example at 1 to 2 nodes, its ranks tracing into TRACE_DIR on the node."""

    def elastic(job: dict[str, Any]) -> None:
        job["spec"]["nodes"] = {"min": 1, "max": 2, "shrinkAfterSeconds": 10}
        pod = job["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        container["volumeMounts"] = [{"name": "trace", "mountPath": TRACE}]
        pod["volumes"] = [{"name": "trace", "hostPath": {"path": trace_dir, "type": "Directory"}}]

    args = ["--epochs", str(EPOCHS), "--save-every", "5", "--step-delay", "1", "--trace", TRACE]
    return multinode_manifests(trainer, s3, prefix, args, elastic)


@pytest.fixture
def trace(kind_cluster: KindCluster) -> Iterator[Path]:
    """A folder of KindCluster.rwx the trainer (uid 1000) may write; removed after."""
    folder = kind_cluster.rwx / NAMESPACE
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    folder.chmod(0o777)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def elastic(
    kind_cluster: KindCluster,
    pushed: dict[str, str],
    kind_s3: dict[str, str],
    operator: None,
    trace: Path,
    tmp_path: Path,
) -> Iterator[Job]:
    """The elastic gang running on both workers with a checkpoint committed."""
    on_node = f"{RWX_PATH}/{trace.name}"
    with gang_started(
        kind_cluster,
        kind_s3,
        NAMESPACE,
        tmp_path,
        lambda prefix: elastic_manifests(pushed["trainer"], kind_s3, prefix, on_node),
    ) as job:
        yield job


def traces(trace: Path) -> list[tuple[str, list[dict[str, Any]]]]:
    """Each rank-run's trace file name and lines, the first saying the step it restored. A
    container's pids are small numbers: two attempts' ranks may append to the same file
    (rank-R-world-W-pid-P.jsonl), so a file holds one run per `restored` line."""
    out: list[tuple[str, list[dict[str, Any]]]] = []
    for f in sorted(trace.glob("rank-*.jsonl")):
        for x in (json.loads(x) for x in f.read_text().splitlines() if x.strip().endswith("}")):
            if "restored" in x:
                out.append((f.name, []))
            out[-1][1].append(x)
    return out


def steps_of(trace: Path, world: int) -> int | None:
    """The highest step a rank of world size WORLD traced so far (None before any)."""
    steps = [
        int(x["step"])
        for name, lines in traces(trace)
        if f"-world-{world}-" in name
        for x in lines
        if "step" in x
    ]
    return max(steps) if steps else None


def attempt_of_size(job: Job, attempt: int, nodes: int) -> dict[str, Any] | None:
    """The job's status once ATTEMPT runs as a gang of NODES pods."""
    st = job.status()
    gang = st.get("gang") or {}
    want = (attempt, attempt, f"{nodes}/{nodes}", "Running")
    got = (st.get("attempt"), gang.get("attempt"), gang.get("nodes"), st.get("phase"))
    return st if got == want else None


def test_min_1_max_2_shrinks_to_the_node_left_and_grows_back_without_a_sample_twice(
    elastic: Job, kind_cluster: KindCluster, trace: Path
) -> None:
    # the spot worker reclaimed, no capacity back: attempt 2 places 1 of its 2 pods and shrinks
    hack(kind_cluster, "preempt", SPOT_WORKER, "--notice", "5")
    third = wait_for("attempt 3 on 1 node", lambda: attempt_of_size(elastic, 3, 1), 600)
    history = [
        (h["attempt"], h["nodes"], h["worldSize"], h.get("outcome")) for h in third["gangHistory"]
    ]
    assert history == [(1, 2, 4, "Preempted"), (2, 2, 4, "Shrunk"), (3, 1, 2, None)], history
    why = third["gangHistory"][2]["why"]
    assert why == "1 of spec.nodes.max 2: only 1 pod(s) of attempt 2 could be scheduled", why
    assert (third["preemptions"], third["failures"]) == (1, 0), third
    (shrunk,) = elastic.events("GangShrunk")
    assert "only 1 of 2 pods could be scheduled" in shrunk, shrunk
    assert wait_for("attempt 3 to run", lambda: elastic.running_node("digits-ddp-3-0"), 600) == (
        ON_DEMAND_WORKER
    )
    resumed = wait_for("attempt 3 to train", lambda: steps_of(trace, 2), 300)

    # capacity returns; attempt 3's pod is evicted: attempt 4 asks for 2 nodes again
    hack(kind_cluster, "add-node", SPOT_WORKER)
    wait_for("attempt 3 to train on", lambda: (steps_of(trace, 2) or 0) >= resumed + 2 or None, 120)
    elastic.evict("digits-ddp-3-0")
    fourth = wait_for("attempt 4 on 2 nodes", lambda: attempt_of_size(elastic, 4, 2), 600)
    assert fourth["gangHistory"][-1]["why"] == "spec.nodes.max 2: grown back from 1 (attempt 3)"
    done = elastic.finished()
    assert done["phase"] == "Succeeded", done
    assert (done["preemptions"], done["failures"]) == (2, 0), done

    # each epoch across world sizes 4 -> 2 -> 4: every rank-run's steps up to the next restore
    runs = traces(trace)
    restored = sorted({int(lines[0]["restored"]) for _, lines in runs})
    assert len(restored) == 3 and restored[0] == 0, restored  # attempts 1, 3 and 4 trained
    worlds = {
        r: {n.split("-world-")[1].split("-")[0] for n, lines in runs if lines[0]["restored"] == r}
        for r in restored
    }
    assert worlds == {restored[0]: {"4"}, restored[1]: {"2"}, restored[2]: {"4"}}, worlds
    seen: dict[int, list[int]] = {epoch: [] for epoch in range(EPOCHS)}
    for _, lines in runs:
        start = int(lines[0]["restored"])
        end = next((r for r in restored if r > start), None)
        for x in lines[1:]:
            if end is None or int(x["step"]) <= end:
                seen[int(x["epoch"])] += x["ids"]
    for epoch, ids in seen.items():
        assert sorted(ids) == list(range(SAMPLES)), f"epoch {epoch}: samples skipped or repeated"
