"""What the status says about the ends of attempts, checked against the API's own record:
the savings estimate recomputed from the attempts' pod times (start, the trainer's finish)
and the prices of spec.cost, and `finalSaved: false` when a preempted trainer never saved.
Sidecar ports 18750-18759."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import pytest
from e2e_support import wait_for
from kubernetes import client, watch
from operator_support import rtj_body, running_on, s3_checkpoint, status_of, steps_in_s3, submit
from operator_support import trainer as container
from test_operator_runtime import TRAINER, rtj
from urllib3.exceptions import ProtocolError

pytestmark = pytest.mark.e2e

SPOT, ON_DEMAND = 1.0, 3.0  # spec.cost, per hour
# The runtime tests' trainer, with SIGTERM left to its default action: killed, never saved.
UNSAVED = TRAINER.replace("keep=2)", "keep=2, handle_signals=False)")
assert UNSAVED != TRAINER


class PodRecorder:
    """Every version of the job's pods the API shows, kept by name (the last one wins, and a
    version with the trainer's finish time is never replaced by one without it)."""

    def __init__(self, core: client.CoreV1Api, namespace: str, job_name: str) -> None:
        self.pods: dict[str, dict[str, Any]] = {}
        self._watch = watch.Watch()
        self._args = (core.list_namespaced_pod, namespace)
        self._selector = f"spotrun.dev/job={job_name}"
        self._serialize = core.api_client.sanitize_for_serialization
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self._watch.stream(*self._args, label_selector=self._selector,
                                            timeout_seconds=600):
                pod = self._serialize(event["object"])
                name = pod["metadata"]["name"]
                if finished_at(self.pods.get(name)) and not finished_at(pod):
                    continue
                self.pods[name] = pod
        except ProtocolError:  # the stream closed under stop()
            if not self._stopped.is_set():
                raise

    def stop(self) -> None:
        self._stopped.set()
        self._watch.stop()


def finished_at(pod: dict[str, Any] | None) -> str | None:
    for status in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if status["name"] == "trainer":
            return ((status.get("state") or {}).get("terminated") or {}).get("finishedAt")
    return None


def seconds(pod: dict[str, Any]) -> float:
    """The pod's run time as the API records it: startTime to the trainer's finish."""
    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    end = finished_at(pod)
    assert end is not None, f"{pod['metadata']['name']}: no finish time seen"
    return (parse(end) - parse(pod["status"]["startTime"])).total_seconds()


def test_savings_in_the_status_are_the_attempts_pod_times_at_the_specs_prices(
    cluster, namespace, operator, process_node, s3, s3_bucket
):
    core = cluster.core()
    recorder = PodRecorder(core, namespace, "savings")
    try:
        _, custom = submit(cluster, namespace, s3, rtj(
            "savings", s3_bucket, s3.endpoint_url, 18750, steps=300, pause=0.05,
            spot={"backoffSeconds": 0}, cost={"spotHourly": SPOT, "onDemandHourly": ON_DEMAND}))
        node = wait_for(lambda: running_on(core, namespace, "savings-1"), "savings-1 to run",
                        timeout=90)
        wait_for(lambda: (status_of(custom, namespace, "savings").get("lastCheckpoint") or {})
                 .get("step", 0) >= 40, "a checkpoint of step 40", timeout=120, interval=0.5)
        process_node.preempt(node)
        process_node.add_node("spot")
        done = wait_for(lambda: (st := status_of(custom, namespace, "savings"))
                        .get("phase") in ("Succeeded", "Failed") and st,
                        "the job to finish", timeout=300, interval=1)
    finally:
        recorder.stop()
    assert done["phase"] == "Succeeded" and done["preemptions"] == 1, done
    pods = recorder.pods
    assert sorted(pods) == ["savings-1", "savings-2"]
    spot = sum(seconds(p) for p in pods.values()
               if p["metadata"]["labels"]["spotrun.dev/capacity"] == "spot")
    on_demand = sum(seconds(p) for p in pods.values()) - spot
    print(f"pod seconds: spot {spot}, on-demand {on_demand}; status: {done['spotSeconds']}, "
          f"{done['onDemandSeconds']}, savings {done['estimatedSavings']}")
    assert spot > 0
    assert done["spotSeconds"] == pytest.approx(spot, abs=2.0)  # timestamps are whole seconds
    assert done["onDemandSeconds"] == pytest.approx(on_demand, abs=2.0)
    expected = ((spot + on_demand) * ON_DEMAND - (spot * SPOT + on_demand * ON_DEMAND)) / 3600
    assert done["estimatedSavings"] == pytest.approx(expected, abs=2 * 2.0 * ON_DEMAND / 3600)


def test_a_preempted_trainer_that_never_saved_shows_final_saved_false(
    cluster, namespace, operator, process_node, s3, s3_bucket
):
    env = {"EVERY": "20", "STEPS": "100000", "PAUSE": "0.05"}
    core, custom = submit(cluster, namespace, s3, rtj_body(
        "unsaved", container(["python", "-c", UNSAVED], env),
        s3_checkpoint(s3_bucket, "unsaved", s3.endpoint_url, 18751),
        terminationGracePeriodSeconds=15,
        spot={"backoffSeconds": 600}))  # no second attempt to overwrite the record
    node = wait_for(lambda: running_on(core, namespace, "unsaved-1"), "unsaved-1 to run",
                    timeout=90)
    wait_for(lambda: (status_of(custom, namespace, "unsaved").get("lastCheckpoint") or {})
             .get("step", 0) >= 40, "a checkpoint of step 40", timeout=120, interval=0.5)
    process_node.preempt(node)
    st = wait_for(lambda: (s := status_of(custom, namespace, "unsaved"))
                  .get("preemptions") == 1 and not s.get("draining") and s,
                  "the preemption and the old attempt's end to be recorded", timeout=120)
    saved = steps_in_s3(s3, s3_bucket, "unsaved")
    assert st["lastCheckpoint"]["finalSaved"] is False, st
    assert st["lastCheckpoint"]["step"] == saved[-1]  # the periodic one S3 holds
    assert saved[-1] % 20 == 0  # no save at SIGTERM: only interval saves exist
