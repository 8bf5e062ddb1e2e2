"""Helpers of the operator's e2e tests: ResumableTrainingJob bodies, submitting them with the
S3 Secret they name, and reading back jobs, their pods, events and checkpoints in S3."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from e2e_support import IMAGE, read_pod, wait_for
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from spotrun import layout

ARGS = ("spotrun.dev", "v1alpha1")
PLURAL = "resumabletrainingjobs"
SECRET = "s3-credentials"
EPOCHS = 40  # the digits example's 1800 steps: long enough to be preempted twice mid-training


def trainer(command: list[str], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The job's one container, ``trainer``, running ``command`` with ``env``."""
    container: dict[str, Any] = {"name": "trainer", "image": IMAGE, "command": command}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return container


def s3_checkpoint(bucket: str, name: str, endpoint: str, port: int | None = None,
                  **extra: Any) -> dict[str, Any]:
    """spec.checkpoint: s3://bucket/name on ``endpoint`` with the test Secret's keys; a
    sidecar port of the job's own (the process node shares the host network)."""
    checkpoint: dict[str, Any] = {"storage": {"uri": f"s3://{bucket}/{name}",
                                              "endpoint": endpoint, "secretRef": {"name": SECRET}}}
    if port is not None:
        checkpoint["sidecarPort"] = port
    return {**checkpoint, **extra}


def rtj_body(name: str, container: dict[str, Any], checkpoint: dict[str, Any],
             **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "/".join(ARGS),
        "kind": "ResumableTrainingJob",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"containers": [container]}}, "checkpoint": checkpoint,
                 **spec},
    }


def digits_job(name: str, bucket: str, endpoint: str, **spec: Any) -> dict[str, Any]:
    """examples/digits/train.py for EPOCHS epochs (on CPU: no node has a GPU), saving at once
    on SIGTERM: trained on through its 30 s notice, this short job runs to its end within it
    (the notice is tested by tests/integration/test_notice*.py)."""
    return rtj_body(
        name, trainer(["python", "examples/digits/train.py", "--epochs", str(EPOCHS)],
                      {"SPOTRUN_SAVE_AT_ONCE": "1"}),
        s3_checkpoint(bucket, name, endpoint),
        gpu={"count": 1, "fallback": "cpu"}, terminationGracePeriodSeconds=30, **spec)


def s3_secret(core: client.CoreV1Api, namespace: str, s3: Any) -> None:
    core.create_namespaced_secret(namespace, {
        "metadata": {"name": SECRET},
        "stringData": {"AWS_ACCESS_KEY_ID": s3.access_key_id,
                       "AWS_SECRET_ACCESS_KEY": s3.secret_access_key},
    })


def submit(cluster: Any, namespace: str, s3: Any,
           *jobs: dict[str, Any]) -> tuple[client.CoreV1Api, client.CustomObjectsApi]:
    """Create the S3 Secret, then ``jobs``; the APIs to follow them with."""
    core, custom = cluster.core(), client.CustomObjectsApi(cluster.api)
    s3_secret(core, namespace, s3)
    for body in jobs:
        custom.create_namespaced_custom_object(*ARGS, namespace, PLURAL, body)
    return core, custom


def steps_in_s3(s3: Any, bucket: str, prefix: str) -> list[int]:
    """Committed checkpoints (their MANIFEST.json exists) under ``prefix``."""
    out = []
    pages = s3.client().get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{prefix}/{layout.CHECKPOINTS}/")
    for page in pages:
        for obj in page.get("Contents", []):
            parts = obj["Key"].split("/")
            if parts[-1] == layout.MANIFEST and (step := layout.parse_step_dirname(parts[-2])):
                out.append(step)
    return sorted(out)


def get_job(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    return dict(custom.get_namespaced_custom_object(*ARGS, namespace, PLURAL, name))


def status_of(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    return dict(get_job(custom, namespace, name).get("status") or {})


def finished(custom: client.CustomObjectsApi, namespace: str, name: str) -> Any:
    """The job once its phase is Succeeded or Failed, else None."""
    j = get_job(custom, namespace, name)
    return j if j.get("status", {}).get("phase") in ("Succeeded", "Failed") else None


def gone(custom: client.CustomObjectsApi, namespace: str, name: str) -> bool:
    """Whether the job no longer exists (404)."""
    try:
        get_job(custom, namespace, name)
    except ApiException as err:
        return err.status == 404
    return False


def events_of(core: client.CoreV1Api, namespace: str, name: str) -> list[tuple[str, str]]:
    items = core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}").items
    # creationTimestamp has one-second resolution and the operator posts several Events in the
    # same second: the etcd revision that created each one breaks the tie (our own control plane)
    items.sort(key=lambda e: (e.metadata.creation_timestamp, int(e.metadata.resource_version)))
    return [(e.reason, e.message) for e in items]


def events_once(
    core: client.CoreV1Api, namespace: str, name: str, want: Mapping[str, int], timeout: float = 30
) -> list[tuple[str, str]]:
    """The Events of ``name`` once each reason of ``want`` is there at least that many times.

    The operator posts a decision's Event after the status patch of the same pass (so a
    conflict never tells twice): a test that waited on the status must wait for the Event too.
    """
    def enough() -> list[tuple[str, str]] | None:
        events = events_of(core, namespace, name)
        reasons = [r for r, _ in events]
        return events if all(reasons.count(r) >= n for r, n in want.items()) else None

    return wait_for(enough, f"the Events {dict(want)} of {name}", timeout=timeout)


def running_on(core: client.CoreV1Api, namespace: str, pod: str) -> str | None:
    p = read_pod(core, namespace, pod)
    if p is None or p.status.phase != "Running" or p.metadata.deletion_timestamp:
        return None
    return str(p.spec.node_name)
