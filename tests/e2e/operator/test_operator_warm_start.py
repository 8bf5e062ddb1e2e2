"""Warm start on the local control plane: a spot interruption with notice (taint, eviction with
the pod's grace) gets attempt 2's pod created while attempt 1's pod still saves; attempt 2
restores the step attempt 1 saved on SIGTERM (0 steps lost) and the status counts one
preemption. The cloud has capacity elsewhere: a fresh spot node exists before the eviction.
Sidecar port 18770."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from e2e_support import wait_for
from kubernetes import client, watch
from operator_support import events_of, get_job, running_on, steps_in_s3, submit
from test_operator_runtime import rtj
from urllib3.exceptions import ProtocolError

pytestmark = pytest.mark.e2e


class Timeline:
    """When this test first saw each pod of the job created, and each one ended (phase
    Succeeded/Failed, or deleted), in the order the API server's watch told it."""

    def __init__(self, core: client.CoreV1Api, namespace: str, job: str) -> None:
        self.created: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self._watch = watch.Watch()
        self._args = (core.list_namespaced_pod, namespace)
        self._selector = f"spotrun.dev/job={job}"
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self._watch.stream(
                *self._args, label_selector=self._selector, timeout_seconds=900
            ):
                pod: Any = event["object"]
                name, now = pod.metadata.name, time.monotonic()
                self.created.setdefault(name, now)
                over = pod.status.phase in ("Succeeded", "Failed")
                if over or event["type"] == "DELETED":
                    self.ended.setdefault(name, now)
        except ProtocolError:
            if not self._stopped.is_set():
                raise

    def stop(self) -> None:
        self._stopped.set()
        self._watch.stop()


def test_an_eviction_with_notice_starts_the_next_attempt_before_the_old_pod_ends(
    cluster, namespace, operator, process_node, s3, s3_bucket
):
    # the runtime tests' trainer, saving at once on SIGTERM (not training on through the
    # notice: what is tested here is the handoff), with room for a slow exit on a busy machine
    body = rtj("warm", s3_bucket, s3.endpoint_url, 18770, steps=100000, pause=0.02)
    body["spec"]["terminationGracePeriodSeconds"] = 45
    body["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "SPOTRUN_SAVE_AT_ONCE", "value": "1"}
    )
    core, custom = submit(cluster, namespace, s3, body)
    timeline = Timeline(core, namespace, "warm")
    try:
        node = wait_for(lambda: running_on(core, namespace, "warm-1"), "warm-1 to run",
                        timeout=180)
        wait_for(lambda: [s for s in steps_in_s3(s3, s3_bucket, "warm") if s >= 60],
                 "warm-1 to save a few checkpoints", timeout=180)
        process_node.add_node("spot")  # capacity elsewhere, before the interruption
        process_node.preempt(node)
        wait_for(lambda: "warm-2" in timeline.created, "warm-2 to be created", timeout=120)
        wait_for(lambda: "warm-1" in timeline.ended, "warm-1 to end", timeout=180)
        assert timeline.created["warm-2"] < timeline.ended["warm-1"]

        job = wait_for(
            lambda: (j := get_job(custom, namespace, "warm")).get("status", {}).get(
                "draining") is None and j["status"].get("attempt") == 2 and j,
            "attempt 1's end to be folded in", timeout=180)
        status = job["status"]
        assert (status["preemptions"], status["failures"]) == (1, 0)
        saved = status["lastCheckpoint"]
        assert saved["finalSaved"] is True

        wait_for(lambda: running_on(core, namespace, "warm-2"), "warm-2 to run", timeout=180)
        log = wait_for(
            lambda: (text := process_node.log(namespace, "warm-2", "trainer"))
            and "spotrun: restored step" in text and text,
            "warm-2's trainer to restore", timeout=180)
        assert f"spotrun: restored step {saved['step']} " in log  # 0 steps lost
        sidecar = process_node.log(namespace, "warm-2", "spotrun-sidecar")
        assert "attempt 1 ended (final save made it" in sidecar

        reasons = [r for r, _ in events_of(core, namespace, "warm")]
        assert reasons.count("Preempted") == 1 and reasons.count("WarmStart") == 1
        assert reasons.count("PreemptedAttemptEnded") == 1
        assert get_job(custom, namespace, "warm")["status"]["preemptions"] == 1
    finally:
        timeline.stop()
