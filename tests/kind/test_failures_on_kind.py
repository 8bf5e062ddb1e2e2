"""A trainer's own failures on kind's real kubelets are failures, not preemptions: a job whose
script exceeds its memory limit (the kernel's OOM killer, containerd's OOMKilled) and a job whose
trainer fails its livenessProbe (the kubelet's kill: exit 143 on a Ready node) each end Failed
after backoffLimit + 1 attempts, every end charged to backoffLimit, none counted as a preemption,
and the Events name the cause.

The operator is helm-installed from the pushed image (tests/kind/chart.py); each job runs a tiny
`python -c` script in the pushed trainer image on the spot worker, its checkpoints in the S3
server pods reach (hack/kind/s3). Both jobs run at once: about 3 min, the probe kill's end being
decided only endings.KILL_SETTLE_SECONDS (50 s) after each exit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.kind import chart
from tests.kind.jobs import rtj
from tests.kind.kindenv import KindCluster, wait_for

pytestmark = [pytest.mark.kind, pytest.mark.timeout(3600)]

NAMESPACE = "failures-kind"
BACKOFF_LIMIT = 1
EAT_MEMORY = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))\n"
HANG = "import time\nprint('training', flush=True)\ntime.sleep(3600)\n"
LIVENESS = {  # fails from the start: the kubelet kills the trainer ~10 s after it starts
    "exec": {"command": ["false"]},
    "initialDelaySeconds": 5,
    "periodSeconds": 2,
    "failureThreshold": 2,
}


def job(name: str, pushed: dict[str, str], s3: dict[str, str], trainer: dict[str, Any]) -> Any:
    return rtj(name, {"image": pushed["trainer"], **trainer}, s3, BACKOFF_LIMIT, grace=10)


class Jobs:
    def __init__(self, cluster: KindCluster) -> None:
        self.cluster = cluster

    def k(self, *args: str, stdin: str | None = None) -> str:
        return self.cluster.kubectl("-n", NAMESPACE, *args, stdin=stdin)

    def status(self, name: str) -> dict[str, Any]:
        found = json.loads(self.k("get", "resumabletrainingjob", name, "-o", "json"))
        return dict(found.get("status") or {})

    def finished(self, name: str) -> dict[str, Any]:
        return wait_for(
            f"job {name} to finish",
            lambda: (st := self.status(name)).get("phase") in ("Succeeded", "Failed") and st,
            900,
        )

    def events(self, name: str) -> list[tuple[str, str]]:
        listed = json.loads(
            self.k("get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json")
        )["items"]
        return [(e["reason"], e["message"]) for e in listed]


@pytest.fixture
def jobs(
    kind_cluster: KindCluster, pushed: dict[str, str], kind_s3: dict[str, str], operator: None
) -> Iterator[Jobs]:
    """The OOM job and the liveness job, submitted together with kubectl apply -f."""
    kind_cluster.kubectl("create", "namespace", NAMESPACE)
    j = Jobs(kind_cluster)
    try:
        oom = {
            "command": ["python", "-c", EAT_MEMORY],
            "resources": {"requests": {"memory": "128Mi"}, "limits": {"memory": "128Mi"}},
        }
        hang = {"command": ["python", "-c", HANG], "livenessProbe": LIVENESS}
        manifests = [
            chart.s3_secret(kind_s3),
            job("oom", pushed, kind_s3, oom),
            job("liveness", pushed, kind_s3, hang),
        ]
        j.k("apply", "-f", "-", stdin=yaml.safe_dump_all(manifests))
        yield j
    finally:
        # while the operator runs: its finalizer on the jobs must be lifted by it
        kind_cluster.delete_namespace(NAMESPACE)


def assert_failed_as_its_own(jobs: Jobs, name: str, cause: str, exit_code: int) -> None:
    status = jobs.finished(name)
    assert status["phase"] == "Failed", status
    # every attempt charged to backoffLimit, none counted as a preemption
    assert (status["failures"], status["preemptions"]) == (BACKOFF_LIMIT + 1, 0), status
    assert (status["attempt"], status["lastExitCode"]) == (BACKOFF_LIMIT + 1, exit_code), status
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["status"] == "True" and failed["reason"] == "BackoffLimitExceeded", failed
    assert cause in failed["message"], failed
    told = jobs.events(name)
    retried = [m for reason, m in told if reason == "AttemptFailed"]
    assert len(retried) == BACKOFF_LIMIT and cause in retried[0], told
    assert f"retry 1 of {BACKOFF_LIMIT}" in retried[0], retried
    assert not [r for r, _ in told if r.startswith("Preempt")], told


def test_oom_and_liveness_kills_are_failures_charged_to_backoff_limit(jobs: Jobs) -> None:
    assert_failed_as_its_own(jobs, "oom", "OOMKilled (exit code 137)", 137)
    assert_failed_as_its_own(jobs, "liveness", "livenessProbe", 143)
