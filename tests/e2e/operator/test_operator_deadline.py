"""spec.deadline on the local control plane: a job with a deadline trains on spot, its spot node
is reclaimed and none is left; while its next attempt waits for spot it falls behind the line
(uniform progress) and the operator moves it to on-demand, saying why in status.deadline and an
Event; once a spot node is back and the job has slack for two restarts, the on-demand attempt
saves and the next one runs on spot, restoring that save (no preemption counted); the job ends
Succeeded before its deadline, with its restarts measured (status.deadline.restartSeconds).

The job's spot nodes are a zone of the test's own (spec.spot.nodeSelectorTerms); on-demand
attempts run on the cluster's on-demand node. Sidecar port 18810."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest
from e2e_support import read_pod, wait_for
from operator_support import (
    events_of,
    finished,
    rtj_body,
    s3_checkpoint,
    status_of,
    submit,
    trainer,
)

pytestmark = pytest.mark.e2e

ZONE = "topology.kubernetes.io/zone"
CAPACITY = "spotrun.dev/capacity"
TOTAL = 160  # steps of ~0.5 s: ~80 s of training
# ~0.5 s a step, a checkpoint every 4 steps; ends at TOTAL (the Checkpointer saves at the end)
TRAINER = """
import os, time, torch, spotrun
total = int(os.environ["TOTAL_STEPS"])
torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(64, 4), torch.randn(64, 1)
with spotrun.Checkpointer(model=model, optimizer=opt, interval_steps=4, keep=3) as ckpt:
    start = ckpt.restore()
    print(f"trainer: attempt {os.environ['SPOTRUN_ATTEMPT']} restored step {start}", flush=True)
    while ckpt.global_step < total:
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        ckpt.step(metrics={"loss": loss.item()})
        time.sleep(0.5)
"""


def running_pod(core: Any, namespace: str, attempt: int) -> Any | None:
    pod = read_pod(core, namespace, f"dl-{attempt}")
    return pod if pod is not None and pod.status.phase == "Running" else None


def told(core: Any, namespace: str, words: str) -> list[str] | None:
    """The DeadlineCapacity Events saying ``words``, once there is one."""
    found = [m for r, m in events_of(core, namespace, "dl")
             if r == "DeadlineCapacity" and words in m]
    return found or None


def test_a_deadline_job_goes_on_demand_when_behind_and_back_to_spot_when_ahead(
    cluster, namespace, operator, process_node, s3, s3_bucket
):
    zone = f"dl-{uuid.uuid4().hex[:6]}"
    first = process_node.add_node("spot", zone=zone)
    mine = {"matchExpressions": [
        {"key": ZONE, "operator": "In", "values": [zone]},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]},
    ]}
    body = rtj_body("dl", trainer(["python", "-c", TRAINER], {"TOTAL_STEPS": str(TOTAL)}),
                    s3_checkpoint(s3_bucket, "dl", s3.endpoint_url, 18810),
                    terminationGracePeriodSeconds=30, backoffLimit=0,
                    spot={"nodeSelectorTerms": [mine]},
                    deadline={"withinSeconds": 300, "totalSteps": TOTAL, "restartSeconds": 15})
    core, custom = submit(cluster, namespace, s3, body)

    # attempt 1 on the zone's spot node until the operator has measured the step time
    wait_for(lambda: running_pod(core, namespace, 1), "dl-1 to run", timeout=120)
    assert read_pod(core, namespace, "dl-1").spec.node_name == first
    measured = wait_for(
        lambda: (status_of(custom, namespace, "dl").get("deadline") or {}).get("stepSeconds"),
        "the step time to be measured", timeout=120)
    assert 0.3 < measured < 5, measured  # ~0.5 s a step, as the trainer sleeps
    process_node.preempt(first)  # the zone's only spot node: spot is gone

    # the next attempt waits for spot; once behind the line it moves to on-demand
    moved = wait_for(lambda: told(core, namespace, "runs on on-demand nodes"),
                     "the move to on-demand", timeout=150)
    assert "behind while spot is short" in moved[0], moved
    on_demand = wait_for(
        lambda: next((p for a in (3, 4) if (p := running_pod(core, namespace, a))), None),
        "the on-demand attempt to run", timeout=120)
    assert on_demand.metadata.labels[CAPACITY] == "on-demand"
    attempt = int(on_demand.metadata.labels["spotrun.dev/attempt"])
    st = status_of(custom, namespace, "dl")
    assert st["onDemand"] is True and st["deadline"]["capacity"] == "on-demand"
    assert "behind while spot is short" in st["deadline"]["reason"], st["deadline"]
    assert st["deadline"]["projectedFinish"] < st["deadline"]["finishBy"]

    # spot is back, and the job has slack: the on-demand attempt saves, the next runs on spot
    second = process_node.add_node("spot", zone=zone)
    back = wait_for(lambda: running_pod(core, namespace, attempt + 1),
                    f"dl-{attempt + 1} to run on spot", timeout=150)
    assert back.spec.node_name == second and back.metadata.labels[CAPACITY] == "spot"
    said = told(core, namespace, "back to spot")
    assert said and f"dl-{attempt} on on-demand gets SIGTERM and saves" in said[0], said
    ended = wait_for(lambda: told(core, namespace, "stopped for the deadline"),
                     "the moved attempt's end", timeout=60)
    assert "final save made it" in ended[0], ended

    done = wait_for(lambda: finished(custom, namespace, "dl"), "the job to finish", timeout=240)
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert status["preemptions"] == 1 and status["failures"] == 0  # the move is neither
    assert status["lastCheckpoint"]["step"] == TOTAL
    assert status["spotSeconds"] > 0 and status["onDemandSeconds"] > 0
    finish_by = datetime.fromisoformat(status["deadline"]["finishBy"].replace("Z", "+00:00"))
    completed = datetime.fromisoformat(status["completionTime"].replace("Z", "+00:00"))
    assert completed < finish_by
    # the restarts (to on-demand, back to spot) were measured from their own checkpoints, and
    # the rule counts the largest of them in place of spec.deadline.restartSeconds
    seen = status["deadline"]
    print(f"restarts measured: {seen.get('restartReadings')}, used {seen.get('restartSeconds')}")
    assert seen.get("restartReadings"), seen
    assert seen["restartSeconds"] == max(seen["restartReadings"]), seen
    assert all(0 <= r < 300 for r in seen["restartReadings"]), seen
    process_node.preempt(second)  # leave no node of this zone behind
