"""A job that waits (its pod cannot be scheduled) is read by every resync pass and written by
none: its resourceVersion stays the same while passes go by. A write per pass would come back
as a watch event and a pass of its own, which at 1000 jobs delays reactions to preemptions."""

from __future__ import annotations

from typing import Any

import pytest
from e2e_support import wait_for
from kubernetes import client
from operator_support import ARGS, PLURAL, rtj_body, trainer
from test_operator_runtime import ports, scrape  # noqa: F401 (ports: a fixture)

pytestmark = pytest.mark.e2e

PASSES = 3  # resync passes watched (one job: one every ~10 s)


def _unschedulable(custom: client.CustomObjectsApi, namespace: str) -> dict[str, Any] | None:
    """The job once the operator has taken in the scheduler's verdict and kopf's finalizer
    is on it (what startup writes), else None."""
    job: dict[str, Any] = custom.get_namespaced_custom_object(*ARGS, namespace, PLURAL, "quiet")
    conditions = (job.get("status") or {}).get("conditions") or []
    verdict = any(c.get("reason") == "Unschedulable" for c in conditions)
    return job if verdict and job["metadata"].get("finalizers") else None


def test_a_pending_job_is_not_written_by_resync_passes(
    cluster, namespace, ports, operator  # noqa: F811 (ports: the fixture imported above)
):
    custom = client.CustomObjectsApi(cluster.api)
    container = trainer(["true"])
    body = rtj_body("quiet", container, {"storage": {"uri": "s3://quiet/quiet"}})
    body["spec"]["template"]["spec"]["nodeSelector"] = {"spotrun.dev/test": "no-such-node"}
    custom.create_namespaced_custom_object(*ARGS, namespace, PLURAL, body)
    before = wait_for(lambda: _unschedulable(custom, namespace),
                      "status to say the pod cannot be scheduled", timeout=90)
    passes = scrape(ports.metrics)["spotrun_reconcile_duration_seconds_count"]

    wait_for(lambda: scrape(ports.metrics)["spotrun_reconcile_duration_seconds_count"]
             >= passes + PASSES, f"{PASSES} more reconcile passes", timeout=120, interval=1)

    after = custom.get_namespaced_custom_object(*ARGS, namespace, PLURAL, "quiet")
    assert after["status"] == before["status"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], (
        f"{PASSES} passes of a job whose pod waits for a node wrote it: "
        f"{after['metadata'].get('managedFields')}"
    )
