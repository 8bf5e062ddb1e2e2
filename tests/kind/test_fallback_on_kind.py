"""Fallback to on-demand and warm start on kind's real kubelets: the example with
`spot.fallbackToOnDemandAfter: 1` is interrupted with notice on the spot worker and, with no spot
capacity back, its next attempt runs elsewhere, on the on-demand worker, from the step saved on
SIGTERM.

What a user sees: the operator deletes the pod when the node is tainted for interruption
(InterruptionNotice, before any eviction), says FallbackToOnDemand and WarmStart, and creates
attempt 2's pod on an on-demand node at once, while attempt 1's pod still saves (`kubectl get
pods -w` shows digits-2 before digits-1 ends); attempt 2's sidecar waits for attempt 1's final
save and restores it; the on-demand node pulls the trainer image from the registry itself, and
the job Succeeds with 1 preemption and 0 steps lost.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster.node import nodes
from spotrun import layout
from tests.kind.jobs import (
    ON_DEMAND_WORKER,
    SPOT_WORKER,
    STEPS_PER_EPOCH,
    Job,
    hack,
    started,
)
from tests.kind.kindenv import KUBECTL, KindCluster, run, wait_for

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800)]

EPOCHS = 60
CAPACITY_TYPE = "karpenter.sh/capacity-type"
SIDECAR = "spotrun-sidecar"  # the operator's native sidecar (operator/spotrun_operator/models.py)
# one line per pod change: name, phase, and when its trainer ended (empty while it runs)
WATCHED = (
    'jsonpath={.metadata.name}{" "}{.status.phase}{" "}'
    '{.status.containerStatuses[?(@.name=="trainer")].state.terminated.finishedAt}{"\\n"}'
)


class PodWatch:
    """`kubectl get pods -w` on the job's namespace: each change of a pod, in the order the
    API server tells it (name, phase, the trainer's finishedAt or "")."""

    def __init__(self, job: Job) -> None:
        self.seen: list[tuple[str, str, str]] = []
        self._proc = subprocess.Popen(
            [str(KUBECTL), "-n", job.namespace, "get", "pods", "-w", "-o", WATCHED],
            env=job.cluster.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            name, phase, finished = (line.split() + ["", ""])[:3]
            self.seen.append((name, phase, finished))

    def first(self, name: str, *, trainer_ended: bool = False, over: bool = False) -> int:
        """The index of the first change of pod NAME (with its trainer ended / its phase
        Succeeded or Failed); len(seen) when none came."""
        for i, (pod, phase, finished) in enumerate(self.seen):
            if pod != name or (trainer_ended and not finished):
                continue
            if over and phase not in ("Succeeded", "Failed"):
                continue
            return i
        return len(self.seen)

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=30)


@pytest.fixture
def fallback(
    kind_cluster: KindCluster,
    pushed: dict[str, str],
    kind_s3: dict[str, str],
    operator: None,
    tmp_path: Path,
) -> Iterator[Job]:
    spot = {"fallbackToOnDemandAfter": 1}
    with started(
        kind_cluster, kind_s3, pushed["trainer"], "fallback-kind", tmp_path, EPOCHS, spot
    ) as d:
        try:
            yield d
        finally:  # the spot capacity comes back for the tests after this one
            if SPOT_WORKER not in kind_cluster.kubectl("get", "nodes", "-o", "name"):
                hack(kind_cluster, "add-node", SPOT_WORKER)


def scheduled(job: Job, pod: str) -> str | None:
    """The node POD is bound to; None while it is not (or not there)."""
    listed = json.loads(job.k("get", "pods", "-o", "json"))["items"]
    found = [p["spec"].get("nodeName") for p in listed if p["metadata"]["name"] == pod]
    return found[0] if found else None


def sidecar_log(job: Job, pod: str) -> str:
    done = run(KUBECTL, "-n", job.namespace, "logs", pod, "-c", SIDECAR, env=job.cluster.env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_after_a_preemption_the_next_attempt_runs_on_demand_elsewhere_losing_no_step(
    fallback: Job, kind_cluster: KindCluster
) -> None:
    watch = PodWatch(fallback)
    try:
        # a notice long enough that the operator, not the eviction, ends the pod
        preempt = hack(kind_cluster, "preempt", SPOT_WORKER, "--notice", "20")
        assert f"node {SPOT_WORKER} is gone" in preempt, preempt
        # where the scheduler put it (it may train to the end before this looks: no Running)
        node = wait_for("digits-2 to be scheduled", lambda: scheduled(fallback, "digits-2"), 600)
    finally:
        watch.stop()
    assert node == ON_DEMAND_WORKER
    labels = json.loads(kind_cluster.kubectl("get", "node", node, "-o", "json"))["metadata"][
        "labels"
    ]
    assert labels[CAPACITY_TYPE] == nodes.ON_DEMAND
    # warm start: attempt 2's pod exists before attempt 1's trainer has ended (let alone its pod)
    created, ended = watch.first("digits-2"), watch.first("digits-1", trainer_ended=True)
    assert created < ended <= watch.first("digits-1", over=True) < len(watch.seen), watch.seen

    status = fallback.finished()
    assert status["phase"] == "Succeeded", status
    assert (status["preemptions"], status["failures"], status["attempt"]) == (1, 0, 2), status
    assert status["lastCheckpoint"]["step"] == EPOCHS * STEPS_PER_EPOCH
    assert len(fallback.events("InterruptionNotice")) == 1
    (fell_back,) = fallback.events("FallbackToOnDemand")
    (warm,) = fallback.events("WarmStart")
    assert warm.startswith("attempt 2 (digits-2) starts now, while attempt 1 (digits-1) saves")
    ended_events = fallback.events("PreemptedAttemptEnded")
    assert len(ended_events) == 1, ended_events
    assert "ended: its final save made it (step " in ended_events[0], ended_events
    saved = int(ended_events[0].rsplit("(step ", 1)[1].rstrip(")"))
    # attempt 2's sidecar waited for attempt 1's final save, then restored exactly that step
    sidecar = sidecar_log(fallback, "digits-2")
    said = f"attempt 1 ended (final save made it, step {saved})"
    restored = f"spotrun: restored {layout.step_dirname(saved)} from "
    assert "attempt 1 may still be saving" in sidecar, sidecar[-2000:]
    assert said in sidecar and restored in sidecar, sidecar[-2000:]
    assert sidecar.index(said) < sidecar.index(restored), sidecar[-2000:]
    log = fallback.trainer_log("digits-2")
    assert f"spotrun: restored step {saved} " in log, (fell_back, log[-2000:])
