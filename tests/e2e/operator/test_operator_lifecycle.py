"""An operator SIGKILLed at random moments never makes a second pod for one attempt and loses
no job. Suspend/resume keeping the progress is tested on kind's real kubelets:
tests/kind/test_lifecycle_on_kind.py (it ran here too until stop 31; hack/TIERS.md)."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
from e2e_support import wait_for
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from operator_support import (
    ARGS,
    PLURAL,
    finished,
    get_job,
    running_on,
    s3_secret,
)
from test_operator_retries import job
from urllib3.exceptions import HTTPError

pytestmark = pytest.mark.e2e


def pod_of(event: Any) -> Any | None:
    """The pod of a watch event, or None for what carries none: a line the client could not
    decode (None), a BOOKMARK (a bare dict) or an event with ``object=None``."""
    if not isinstance(event, dict) or event.get("type") not in ("ADDED", "MODIFIED", "DELETED"):
        return None
    pod = event.get("object")
    return pod if getattr(pod, "metadata", None) is not None else None


class PodLedger:
    """Every pod UID seen per pod name, and the most pods of one job alive at once and not
    being deleted (a warm start's next pod runs beside the old one while that one drains
    through its notice: two attempts may live, never two that are not ending) (a watch
    that the API server ends is resumed from where it stopped; one that fails is listed
    afresh)."""

    def __init__(self, core: client.CoreV1Api, namespace: str) -> None:
        self.uids: dict[str, set[str]] = {}
        self.alive: dict[str, dict[str, str]] = {}  # job -> {pod: phase}
        self.most_alive: dict[str, int] = {}
        self._watch = watch.Watch()
        self._stopped = threading.Event()
        threading.Thread(target=self._run, args=(core, namespace), daemon=True).start()

    def _run(self, core: client.CoreV1Api, namespace: str) -> None:
        while not self._stopped.is_set():
            try:
                for event in self._watch.stream(
                    core.list_namespaced_pod, namespace, label_selector="spotrun.dev/job",
                    resource_version=self._watch.resource_version, timeout_seconds=600,
                ):
                    if (pod := pod_of(event)) is not None:
                        self._record(event["type"], pod)
            except (ApiException, HTTPError):
                self._watch.resource_version = None  # expired or cut: list afresh

    def _record(self, kind: str, pod: Any) -> None:
        job_name = pod.metadata.labels["spotrun.dev/job"]
        self.uids.setdefault(pod.metadata.name, set()).add(pod.metadata.uid)
        alive = self.alive.setdefault(job_name, {})
        ending = pod.metadata.deletion_timestamp is not None
        if kind == "DELETED" or ending or pod.status.phase in ("Succeeded", "Failed"):
            alive.pop(pod.metadata.name, None)
        else:
            alive[pod.metadata.name] = pod.status.phase
        self.most_alive[job_name] = max(self.most_alive.get(job_name, 0), len(alive))

    def stop(self) -> None:
        self._stopped.set()
        self._watch.stop()


# The toy trainer of test_operator_retries, plus what the spotrun library does when it exits
# on SIGTERM: it leaves the exit marker, so the sidecar stops at once (not after 5 quiet s).
QUICK_TRAINER = """
import os, signal, sys, time
from pathlib import Path
from spotrun import marker
if int(os.environ["SPOTRUN_ATTEMPT"]) <= int(os.environ["PREEMPTIBLE_ATTEMPTS"]):
    def stop(*_):
        marker.write(Path(os.environ["SPOTRUN_CHECKPOINT_DIR"]), None, "preemption")
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    time.sleep(600)
"""


def quick_job(name: str, bucket: str, endpoint: str, preemptions: int, port: int) -> Any:
    # no warm start: a warm next pod is made while its node is still up, and the test counts
    # the attempts of pods made one per preemption
    # (tests/kind/test_fallback_on_kind.py covers the warm start)
    return job(name, bucket, endpoint, {"PREEMPTIBLE_ATTEMPTS": str(preemptions)}, port=port,
               code=QUICK_TRAINER, spot={"backoffSeconds": 0.2, "warmStart": False})


def test_operator_sigkilled_at_random_moments_makes_no_duplicate_pod(
    cluster, namespace, operator, process_node, s3, s3_bucket
):
    """5 jobs preempted together 4 times (20 preemptions); each time the operator is
    SIGKILLed before, during or after the preemptions it has to handle."""
    core, custom = cluster.core(), client.CustomObjectsApi(cluster.api)
    s3_secret(core, namespace, s3)
    ledger = PodLedger(core, namespace)
    rng = random.Random(5)
    cycles = 4
    names = [f"kill-{c}" for c in "abcde"]
    for i, name in enumerate(names):
        custom.create_namespaced_custom_object(*ARGS, namespace, PLURAL, quick_job(
            name, s3_bucket, s3.endpoint_url, cycles, 18730 + i))
    moments = ["before", "during", "after", rng.choice(["before", "during", "after"])]
    rng.shuffle(moments)
    for cycle, when in enumerate(moments, start=1):
        nodes = {}
        for name in names:
            nodes[name] = wait_for(lambda n=name, c=cycle: running_on(core, namespace, f"{n}-{c}"),
                                   f"{name}-{cycle} to run", timeout=120)
        for node in set(nodes.values()):
            # cordoned first: a next pod made at one node's notice never lands on a node
            # preempted next (that would shift the attempt numbers counted here)
            core.patch_node(node, {"spec": {"unschedulable": True}})
        if when == "before":
            operator.kill()
        for node in set(nodes.values()):  # every job's node: 5 preemptions per cycle
            process_node.preempt(node)
            process_node.add_node("spot")
        if when == "during":
            wait_for(lambda c=cycle: any(not running_on(core, namespace, f"{n}-{c}")
                                         for n in names), "a pod to be stopped", timeout=60,
                     interval=rng.uniform(0.05, 0.5))
            operator.kill()
        if when == "after":
            wait_for(lambda c=cycle: all(get_job(custom, namespace, n).get("status", {})
                                         .get("preemptions", 0) >= c for n in names),
                     f"preemption {cycle} recorded", timeout=90)
            operator.kill()
        operator.start()

    for name in names:
        done = wait_for(lambda n=name: finished(custom, namespace, n), f"{name} to finish",
                        timeout=120)
        status = done["status"]
        assert status["phase"] == "Succeeded", status
        assert (status["preemptions"], status["attempt"]) == (cycles, cycles + 1)
    ledger.stop()
    assert len(ledger.uids) == len(names) * (cycles + 1), sorted(ledger.uids)
    assert all(len(uids) == 1 for uids in ledger.uids.values()), ledger.uids
    assert max(ledger.most_alive.values()) == 1, ledger.most_alive
