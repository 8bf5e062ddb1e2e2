"""spec.nodes {min: 1, max: 2} on the real control plane with process nodes: examples/ddp under
torchrun trains on 2 nodes of a zone of the test's own; one is preempted while no other node of
that zone is left, so attempt 2's second pod cannot be scheduled: after shrinkAfterSeconds it ends
as Shrunk and attempt 3 runs on 1 node from the 2-node checkpoint; two nodes come back and the
last one is preempted: attempt 4 runs on 2 nodes again from the 1-node checkpoint. Across both
changes of world size no sample of the epoch is skipped or seen twice (the trainer's trace:
each rank's sample ids per step). The API server refuses what a gang cannot run (CEL).

Sidecar ports 18881-18882, rendezvous port 29641 (the process node shares the host network)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from e2e_support import wait_for
from kubernetes import client
from operator_support import (
    events_once,
    finished,
    rtj_body,
    running_on,
    s3_checkpoint,
    status_of,
    submit,
    trainer,
)
from test_operator_refusals import job as plain_job
from test_operator_refusals import refused_by_api

pytestmark = pytest.mark.e2e

ZONE = "topology.kubernetes.io/zone"
SAMPLES = 1437  # the digits training split


def elastic_job(name: str, bucket: str, endpoint: str, zone: str, trace: Path) -> dict[str, Any]:
    """1 epoch of examples/ddp, 1 process per pod, slowed to ~1 s a step, on the zone's spot
    nodes only; 1 to 2 nodes."""
    command = ["python", "-m", "torch.distributed.run", "examples/ddp/train.py", "--epochs", "1",
               "--save-every", "5", "--step-delay", "1", "--trace", str(trace)]
    container = trainer(command, {"OMP_NUM_THREADS": "1"})
    container["ports"] = [{"name": "rendezvous", "containerPort": 29641}]
    mine = {"matchExpressions": [
        {"key": ZONE, "operator": "In", "values": [zone]},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]},
    ]}
    return rtj_body(name, container, s3_checkpoint(bucket, name, endpoint, 18881),
                    nodes={"min": 1, "max": 2, "shrinkAfterSeconds": 10},
                    spot={"nodeSelectorTerms": [mine]}, terminationGracePeriodSeconds=30)


def traces(trace: Path) -> list[tuple[str, list[dict[str, Any]]]]:
    """Each rank-run's trace file name and lines (the first says the step it restored)."""
    out = []
    for f in sorted(trace.glob("rank-*.jsonl")):
        lines = [json.loads(x) for x in f.read_text().splitlines() if x.strip().endswith("}")]
        out.append((f.name, lines))
    return out


def steps_of(trace: Path, world: int) -> int:
    """The highest step a rank of world size ``world`` traced so far."""
    return max((int(x["step"]) for n, lines in traces(trace) if f"-world-{world}-" in n
                for x in lines if "step" in x), default=0)


def attempt_of_size(custom: Any, namespace: str, name: str, attempt: int, nodes: int
                    ) -> dict[str, Any] | None:
    st = status_of(custom, namespace, name)
    g = st.get("gang") or {}
    ok = (st.get("attempt"), g.get("attempt"), g.get("nodes")) == (attempt, attempt,
                                                                   f"{nodes}/{nodes}")
    return st if ok and st.get("phase") == "Running" else None


def test_min_1_max_2_shrinks_to_the_node_left_and_grows_back_without_a_sample_twice(
    cluster, namespace, operator, process_node, s3, s3_bucket, tmp_path
):
    zone = f"el-{uuid.uuid4().hex[:6]}"
    for _ in range(2):
        process_node.add_node("spot", zone=zone)
    trace = tmp_path / "trace"
    core, custom = submit(cluster, namespace, s3,
                          elastic_job("elastic", s3_bucket, s3.endpoint_url, zone, trace))
    wait_for(lambda: attempt_of_size(custom, namespace, "elastic", 1, 2), "attempt 1 on 2 nodes",
             timeout=240)
    wait_for(lambda: steps_of(trace, 2) >= 6, "attempt 1 to train 6 steps", timeout=240)
    hit = running_on(core, namespace, "elastic-1-1")
    assert hit is not None
    process_node.preempt(hit)  # the zone's one other node runs rank 0: no room for 2 pods

    third = wait_for(lambda: attempt_of_size(custom, namespace, "elastic", 3, 1),
                     "attempt 3 on the 1 node left", timeout=300)
    history = third["gangHistory"]
    assert [(h["attempt"], h["nodes"], h["worldSize"], h.get("outcome")) for h in history] == [
        (1, 2, 2, "Preempted"), (2, 2, 2, "Shrunk"), (3, 1, 1, None)], history
    assert history[2]["why"] == "1 of spec.nodes.max 2: only 1 pod(s) of attempt 2 could be " \
                                "scheduled"
    assert (third["preemptions"], third["failures"]) == (1, 0)
    events = events_once(core, namespace, "elastic", {"GangShrunk": 1})
    (shrunk,) = [m for r, m in events if r == "GangShrunk"]
    assert "only 1 of 2 pods could be scheduled" in shrunk and "elastic-2-1" in shrunk, shrunk
    left = running_on(core, namespace, "elastic-3-0")
    assert left is not None and left != hit
    resumed = wait_for(lambda: (s := steps_of(trace, 1)) >= 1 and s, "attempt 3 to train",
                       timeout=240)

    # capacity returns; the node attempt 3 runs on is reclaimed: attempt 4 asks for 2 again
    for _ in range(2):
        process_node.add_node("spot", zone=zone)
    wait_for(lambda: steps_of(trace, 1) >= resumed + 2, "attempt 3 to train on", timeout=120)
    process_node.preempt(left)
    fourth = wait_for(lambda: attempt_of_size(custom, namespace, "elastic", 4, 2),
                      "attempt 4 on 2 nodes", timeout=300)
    assert fourth["gangHistory"][-1]["why"] == "spec.nodes.max 2: grown back from 1 (attempt 3)"
    done = wait_for(lambda: finished(custom, namespace, "elastic"), "the job to finish",
                    timeout=600)
    assert done["status"]["phase"] == "Succeeded", done["status"]

    # the epoch across world sizes 2 -> 1 -> 2: each attempt's steps up to the next restore
    runs = traces(trace)
    restored = sorted({int(lines[0]["restored"]) for _, lines in runs})
    assert len(restored) == 3 and restored[0] == 0, restored  # attempts 1, 3 and 4 trained
    worlds = {r: {n.split("-world-")[1].split("-")[0] for n, lines in runs
                  if lines[0]["restored"] == r} for r in restored}
    assert worlds == {restored[0]: {"2"}, restored[1]: {"1"}, restored[2]: {"2"}}, worlds
    ids: list[int] = []
    for _, lines in runs:
        start = int(lines[0]["restored"])
        end = next((r for r in restored if r > start), None)
        ids += [i for x in lines[1:] if end is None or int(x["step"]) <= end for i in x["ids"]]
    assert sorted(ids) == list(range(SAMPLES))


def test_the_api_refuses_a_gang_on_a_claim_and_time_based_saves_with_several_ranks(
    cluster, namespace, crd
):
    custom = client.CustomObjectsApi(cluster.api)
    claim = plain_job("claim", nodes={"max": 2})
    claim["spec"]["checkpoint"] = {"storage": {"pvc": {"claimName": "c"}}}
    answer = refused_by_api(custom, namespace, claim)
    assert "storage.pvc cannot be used with nodes.max" in answer, answer  # ">" is escaped
    for spec in ({"nodes": {"max": 2}}, {"procsPerNode": 2}):
        timed = plain_job("timed", ckpt={"intervalSeconds": 60}, **spec)
        answer = refused_by_api(custom, namespace, timed)
        assert "use spec.checkpoint.intervalSteps" in answer, answer
