"""Two operator replicas in a kopf peering on kind, the active one SIGKILLed as a preemption
comes (README, "The operator": "Killing the operator at random moments never makes two pods for
one attempt ... Two replicas run with kopf peering").

The release (`helm install` created kopf's peering CRDs from the chart's crds/) is upgraded to
`replicas=2` (the chart turns peering on: a ClusterKopfPeering, each replica's identity its pod
name, a random priority each, the highest active; before the CRDs moved to crds/ this upgrade
failed: "resource mapping not found ... ClusterKopfPeering") with
`peering.lifetime=10` (a silent replica counts as alive 10 s, kopf's default 60). The example
digits job runs on the spot worker; the active replica's process is SIGKILLed from its node
(`kill -9` of the container's pid: no handler, no goodbye to the peering) and at once the spot
worker is preempted with a 5 s notice and comes back. Whichever replica is active next (the
standby once the dead one's entry expires, or the killed one restarted by its kubelet with a new
priority) handles the preemption once: attempt 2 restores the step saved on SIGTERM, (1, 0, 2),
and the only attempt pods ever scheduled are digits-1 and digits-2, once each.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.kind import chart
from tests.kind.jobs import SPOT_WORKER, Job, StartDigits, hack
from tests.kind.kindenv import KindCluster, wait_for

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800)]

EPOCHS = 5000  # never done here: the test ends once attempt 2 has restored
LIFETIME = 10


def operator_pods(cluster: KindCluster) -> list[dict[str, Any]]:
    listed = cluster.kubectl("-n", chart.NAMESPACE, "get", "pods", "-o", "json")
    return [
        p
        for p in json.loads(listed)["items"]
        if p["status"].get("phase") == "Running" and "deletionTimestamp" not in p["metadata"]
    ]


def peers(cluster: KindCluster) -> dict[str, int]:
    """{identity (a pod name): priority} of every entry of the peering object (a dead
    replica's stays until a live one cleans it out)."""
    found = json.loads(cluster.kubectl("get", "clusterkopfpeering", "spotrun", "-o", "json"))
    return {name: int(info["priority"]) for name, info in (found.get("status") or {}).items()}


def sigkill(cluster: KindCluster, pod: dict[str, Any]) -> None:
    """kill -9 of the operator container's process, from its node (crictl: its host pid)."""
    node = pod["spec"]["nodeName"]
    (status,) = pod["status"]["containerStatuses"]
    container = status["containerID"].split("://", 1)[1]
    info = json.loads(cluster.docker("exec", node, "crictl", "inspect", container))
    cluster.docker("exec", node, "kill", "-9", str(info["info"]["pid"]))


def scheduled(job: Job) -> list[str]:
    """The pods of the job's namespace the scheduler placed, one entry per placement."""
    listed = json.loads(
        job.k("get", "events", "--field-selector", "reason=Scheduled", "-o", "json")
    )
    return sorted(e["involvedObject"]["name"] for e in listed["items"])


def test_the_active_replica_sigkilled_at_a_preemption_the_job_is_handled_once(
    kind_cluster: KindCluster, pushed: dict[str, str], start_digits: StartDigits
) -> None:
    peered = chart.upgrade(
        kind_cluster, pushed, "--set", "replicas=2", "--set", f"peering.lifetime={LIFETIME}"
    )
    assert peered.returncode == 0, peered.stderr
    wait_for("two operator replicas", lambda: len(operator_pods(kind_cluster)) == 2, 300)
    names = {p["metadata"]["name"] for p in operator_pods(kind_cluster)}
    wait_for("both replicas in the peering", lambda: set(peers(kind_cluster)) >= names, 120)
    digits = start_digits("peering-kind", EPOCHS)
    wait_for("the status to name a checkpoint", digits.last_step, 300)

    ranked = peers(kind_cluster)
    active = max(names, key=lambda n: ranked[n])
    (victim,) = [p for p in operator_pods(kind_cluster) if p["metadata"]["name"] == active]
    sigkill(kind_cluster, victim)
    hack(kind_cluster, "preempt", SPOT_WORKER, "--notice", "5")
    hack(kind_cluster, "add-node", SPOT_WORKER)  # the cloud brings capacity back

    ended = wait_for(
        "attempt 1's final save to be reported", lambda: digits.events("PreemptedAttemptEnded"), 300
    )
    assert len(ended) == 1 and "ended: its final save made it (step " in ended[0], ended
    saved = int(ended[0].rsplit("(step ", 1)[1].rstrip(")"))
    digits.restored_in("digits-2", saved)
    status = digits.status()
    assert (status["preemptions"], status["failures"], status["attempt"]) == (1, 0, 2), status
    assert scheduled(digits) == ["digits-1", "digits-2"]

    (killed,) = [p for p in operator_pods(kind_cluster) if p["metadata"]["name"] == active]
    (container,) = killed["status"]["containerStatuses"]
    assert container["restartCount"] == 1, container  # its kubelet restarted the killed one
    assert container["lastState"]["terminated"]["exitCode"] == 137, container
