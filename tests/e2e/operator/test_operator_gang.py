"""Multi-node attempts on the real control plane with process nodes: a gang of 2 pods under
torchrun (gang_worker.py: gloo, one all_reduce, then wait for SIGTERM) rendezvous across 2
nodes; a preempted node ends the whole attempt as a preemption and attempt 2 runs 2 pods
again. A rank SIGKILLed (a failure; the whole gang restarts from the newest checkpoint committed
in S3) is tested on kind: tests/kind/test_gang_on_kind.py."""

from __future__ import annotations

import re
from typing import Any

import pytest
from e2e_support import read_pod, wait_for
from operator_support import (
    events_once,
    rtj_body,
    running_on,
    s3_checkpoint,
    status_of,
    submit,
    trainer,
)

pytestmark = pytest.mark.e2e

WORKER = "tests/e2e/operator/gang_worker.py"
LINE = re.compile(
    r"GANG attempt=(\d+) node_rank=(\d+) rank=(\d+) world=(\d+) sum=(\d+) pid=(\d+)"
)


def gang_job(name: str, bucket: str, endpoint: str, port: int, **spec: Any) -> dict[str, Any]:
    """2 nodes x 1 process of gang_worker.py; each rank's sidecar on port + rank."""
    command = ["python", "-m", "torch.distributed.run", WORKER]
    return rtj_body(name, trainer(command), s3_checkpoint(bucket, name, endpoint, port),
                    nodes={"max": 2}, terminationGracePeriodSeconds=10, **spec)


def joined(process_node: Any, namespace: str, pod: str) -> dict[str, int] | None:
    """What rank ``pod``'s worker printed once it joined the gang (None: not yet)."""
    found = LINE.search(process_node.log(namespace, pod, "trainer"))
    if found is None:
        return None
    keys = ("attempt", "node_rank", "rank", "world", "sum", "pid")
    return dict(zip(keys, (int(x) for x in found.groups()), strict=True))


def wait_gang(core: Any, process_node: Any, namespace: str, job: str, attempt: int
              ) -> tuple[list[str], list[dict[str, int]]]:
    """The nodes of attempt ``attempt``'s 2 pods and what each rank saw, once both joined."""
    pods = [f"{job}-{attempt}-{rank}" for rank in (0, 1)]
    nodes = [wait_for(lambda p=p: running_on(core, namespace, p), f"{p} to run", timeout=180)
             for p in pods]
    seen = [wait_for(lambda p=p: joined(process_node, namespace, p), f"{p} to join the gang",
                     timeout=180) for p in pods]
    return nodes, seen


def test_two_pods_on_two_nodes_rendezvous_and_a_preempted_node_restarts_the_whole_gang(
    cluster, namespace, operator, process_node, s3, s3_bucket
):
    core, custom = submit(cluster, namespace, s3,
                          gang_job("gang", s3_bucket, s3.endpoint_url, 18861))
    nodes, seen = wait_gang(core, process_node, namespace, "gang", 1)
    assert nodes[0] != nodes[1]  # one pod per node
    assert [(s["attempt"], s["node_rank"], s["rank"], s["world"], s["sum"]) for s in seen] == [
        (1, 0, 0, 2, 3), (1, 1, 1, 2, 3)]  # the all_reduce of 1 + 2 crossed the 2 pods
    status = wait_for(lambda: (st := status_of(custom, namespace, "gang")).get("phase")
                      == "Running" and st, "the gang to count as running", timeout=60)
    assert status["gang"]["nodes"] == "2/2" and status["gang"]["worldSize"] == 2
    assert [p["node"] for p in status["gang"]["pods"]] == nodes
    assert core.read_namespaced_service("gang", namespace).spec.cluster_ip == "None"

    process_node.preempt(nodes[1])
    process_node.add_node("spot")
    after = wait_for(lambda: (st := status_of(custom, namespace, "gang")).get("attempt") == 2
                     and st, "attempt 2", timeout=180)
    assert (after["preemptions"], after["failures"]) == (1, 0)
    # rank 0 was stopped gracefully: its worker saw SIGTERM, and the pod is gone
    log = process_node.log(namespace, "gang-1-0", "trainer")
    assert "rank=0 stopping on SIGTERM" in log, log
    events = events_once(core, namespace, "gang", {"Preempted": 1})
    preempted = [m for r, m in events if r == "Preempted"]
    assert len(preempted) == 1 and f"rank 1 (gang-1-1 on node {nodes[1]})" in preempted[0], events
    history = after["gangHistory"]
    assert (history[0]["attempt"], history[0]["outcome"], history[0]["worldSize"]) == (
        1, "Preempted", 2)

    nodes2, seen2 = wait_gang(core, process_node, namespace, "gang", 2)
    assert nodes2[0] != nodes2[1] and nodes[1] not in nodes2
    assert [(s["attempt"], s["world"], s["sum"]) for s in seen2] == [(2, 2, 3)] * 2
    wait_for(lambda: read_pod(core, namespace, "gang-1-1") is None, "gang-1-1 released, gone",
             timeout=60)
