"""Placement: no spot capacity -> on-demand after spot.pendingTimeoutSeconds; a GPU job
without CPU fallback waits (Pending, with a condition saying why) until a GPU node appears.

(gpu.fallback: cpu with no GPU node is test_operator_digits: digits runs there with
gpu {count: 1, fallback: cpu} and SPOTRUN_DEVICE=cpu.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from e2e_support import allowing, read_pod, wait_for
from kubernetes import client
from operator_support import events_of, events_once, finished, get_job, submit
from test_operator_retries import job

pytestmark = pytest.mark.e2e

SPOT = "karpenter.sh/capacity-type"


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in obj.get("status", {}).get("conditions") or []
                 if c["type"] == kind), None)


def unschedulable(custom: client.CustomObjectsApi, namespace: str, name: str,
                  why: str) -> dict[str, Any] | None:
    """The job's Running condition, once it is False/Unschedulable naming ``why``."""
    running = condition(get_job(custom, namespace, name), "Running")
    ok = (running is not None and running["status"] == "False"
          and running["reason"] == "Unschedulable" and why in running["message"])
    return running if ok else None


def container_env(pod: Any, container: str) -> dict[str, str]:
    spec = next(c for c in pod.spec.containers if c.name == container)
    return {e.name: e.value for e in spec.env or [] if e.value is not None}


@pytest.fixture
def no_spot_capacity(cluster: Any) -> Iterator[list[str]]:
    """Every spot node cordoned (the cloud has no spot capacity); uncordoned afterwards."""
    core = cluster.core()
    spot = [n.metadata.name for n in core.list_node(label_selector=f"{SPOT}=spot").items
            if not n.spec.unschedulable]
    for name in spot:
        core.patch_node(name, {"spec": {"unschedulable": True}})
    try:
        yield spot
    finally:
        for name in spot:
            with allowing(404):
                core.patch_node(name, {"spec": {"unschedulable": None}})


def test_no_spot_capacity_moves_the_next_attempt_on_demand_after_the_pending_timeout(
    cluster, namespace, operator, no_spot_capacity, s3, s3_bucket
):
    core, custom = submit(cluster, namespace, s3, job(
        # 2 s of run: pod seconds come from container timestamps (1 s resolution), and with the
        # trainer starting beside its sidecar an instant exit can take 0 s
        "nospot", s3_bucket, s3.endpoint_url, {"PREEMPTIBLE_ATTEMPTS": "0", "RUN_SECONDS": "2"},
        port=18720,
        spot={"pendingTimeoutSeconds": 5}))
    waiting = wait_for(lambda: unschedulable(custom, namespace, "nospot", "unschedulable"),
                       "the job to say its pod cannot be scheduled", timeout=60)
    assert waiting["message"].startswith("nospot-1 cannot be scheduled"), waiting
    first = read_pod(core, namespace, "nospot-1")
    assert first is None or not first.spec.node_name  # never placed on a spot node

    done = wait_for(lambda: finished(custom, namespace, "nospot"), "the job to finish",
                    timeout=120)
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert status["onDemand"] is True
    assert (status["attempt"], status["preemptions"], status["failures"]) == (2, 0, 0)
    assert status["onDemandSeconds"] > 0 and status["spotSeconds"] == 0
    events = events_once(core, namespace, "nospot", {"PendingTimeout": 1, "AttemptCreated": 2})
    timeouts = [m for r, m in events if r == "PendingTimeout"]
    assert len(timeouts) == 1, events
    assert "for spot capacity: attempt 2 runs on on-demand nodes" in timeouts[0]
    created = [m for r, m in events if r == "AttemptCreated"]
    assert created[-1] == "attempt 2 (nospot-2) created on on-demand nodes", events
    second = read_pod(core, namespace, "nospot-2")
    assert core.read_node(second.spec.node_name).metadata.labels[SPOT] == "on-demand"
    assert read_pod(core, namespace, "nospot-1") is None  # the pending pod was withdrawn


@pytest.fixture
def gpu_node(process_node: Any, cluster: Any) -> Iterator[list[str]]:
    """Names of GPU nodes added by the test, removed afterwards (other tests expect none)."""
    added: list[str] = []
    yield added
    core = cluster.core()
    for name in added:
        process_node.preempt(name)
    wait_for(lambda: not any(n.metadata.name in added for n in core.list_node().items),
             "the GPU nodes to be gone", timeout=60)


def test_gpu_job_without_cpu_fallback_waits_for_a_gpu_node(
    cluster, namespace, operator, process_node, gpu_node, s3, s3_bucket
):
    core, custom = cluster.core(), client.CustomObjectsApi(cluster.api)
    assert not any("nvidia.com/gpu" in (n.status.allocatable or {})
                   for n in core.list_node().items)
    submit(cluster, namespace, s3, job(
        "gpu", s3_bucket, s3.endpoint_url, {"PREEMPTIBLE_ATTEMPTS": "0"}, port=18721,
        gpu={"count": 1, "fallback": "none"}))
    waiting = wait_for(lambda: unschedulable(custom, namespace, "gpu", "nvidia.com/gpu"),
                       "the job to say no node has a GPU", timeout=60)
    assert "Insufficient nvidia.com/gpu" in waiting["message"], waiting

    # More spot capacity without GPUs changes nothing: the scheduler tries again, the pod waits.
    before = len(core.list_node().items)
    process_node.add_node("spot")
    wait_for(lambda: unschedulable(custom, namespace, "gpu", f"0/{before + 1} nodes"),
             "the scheduler to have tried the new node too", timeout=60)
    status = get_job(custom, namespace, "gpu")["status"]
    assert (status["phase"], status["attempt"], status["failures"]) == ("Pending", 1, 0), status
    assert operator.proc is not None and operator.proc.poll() is None  # alive
    assert not [r for r, _ in events_of(core, namespace, "gpu") if r == "CPUFallback"]

    # A GPU node arrives: the waiting pod runs there, on CUDA.
    gpu_node.append(process_node.add_node("spot", gpus=1))
    pod = wait_for(lambda: (p := read_pod(core, namespace, "gpu-1")) is not None
                   and p.spec.node_name and p, "gpu-1 to be scheduled", timeout=60)
    assert pod.spec.node_name == gpu_node[0]
    trainer = next(c for c in pod.spec.containers if c.name == "trainer")
    assert trainer.resources.limits["nvidia.com/gpu"] == "1"
    assert container_env(pod, "trainer")["SPOTRUN_DEVICE"] == "cuda"
    done = wait_for(lambda: finished(custom, namespace, "gpu"), "the job to finish", timeout=60)
    assert done["status"]["phase"] == "Succeeded"
    assert (done["status"]["attempt"], done["status"]["preemptions"]) == (1, 0)
