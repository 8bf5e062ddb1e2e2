"""What the API refuses never leaves a job silent or stuck: the CRD refuses at admission what
the operator could not run (a name too long for its labels, reserved names, a trainerContainer
that does not exist); a pod Pod Security admission refuses becomes the job's condition and a
Warning Event, retried with backoff; a job whose storage overlaps an older job's gets no pod;
and a deleted job whose cleanup pod is refused goes, saying its checkpoints stay."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml
from e2e_support import allowing, read_pod, wait_for
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from operator_support import (
    ARGS,
    PLURAL,
    events_of,
    gone,
    rtj_body,
    s3_checkpoint,
    status_of,
    submit,
    trainer,
)

pytestmark = pytest.mark.e2e

SIDECAR, VOLUME = "spotrun-sidecar", "spotrun-checkpoints"


def job(
    name: str,
    uri: str = "s3://checkpoints/refusals",
    endpoint: str = "http://s3.invalid",
    port: int = 18940,
    **spec: Any,
) -> dict[str, Any]:
    """A job whose trainer waits for its SIGTERM (where a node runs it at all)."""
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    checkpoint = s3_checkpoint(bucket, prefix, endpoint, port, **spec.pop("ckpt", {}))
    command = ["python", "-c", "import time; time.sleep(600)"]
    return rtj_body(name, trainer(command), checkpoint, terminationGracePeriodSeconds=5, **spec)


def restricted(core: client.CoreV1Api, namespace: str) -> None:
    core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )


def condition(custom: client.CustomObjectsApi, namespace: str, name: str, kind: str) -> Any:
    """The job's condition ``kind`` while it is True, else None."""
    conds = status_of(custom, namespace, name).get("conditions") or []
    return next((c for c in conds if c["type"] == kind and c["status"] == "True"), None)


def refused_by_api(custom: client.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(*ARGS, namespace, PLURAL, body)
    assert err.value.status == 422, err.value.body
    return str(err.value.body)


def test_the_crd_refuses_what_the_operator_could_not_run(cluster, namespace, crd):
    custom = client.CustomObjectsApi(cluster.api)
    long = refused_by_api(custom, namespace, job("x" * 64))
    assert "metadata.name: at most 63 characters" in long, long

    for field, item, reserved in (
        ("containers", {"name": SIDECAR, "image": "img"}, SIDECAR),
        ("initContainers", {"name": SIDECAR, "image": "img"}, SIDECAR),
        ("volumes", {"name": VOLUME, "emptyDir": {}}, VOLUME),
    ):
        body = job("reserved")
        body["spec"]["template"]["spec"].setdefault(field, []).append(item)
        answer = refused_by_api(custom, namespace, body)
        assert f"spec.template.spec.{field}" in answer, answer
        assert f"the name {reserved} is reserved" in answer, answer

    missing = refused_by_api(custom, namespace, job("trainer", trainerContainer="nope"))
    assert "spec.trainerContainer" in missing and "must name one of" in missing, missing

    longest = job("x" * 63, trainerContainer="trainer")  # the limit itself is fine
    custom.create_namespaced_custom_object(*ARGS, namespace, PLURAL, longest)
    custom.delete_namespaced_custom_object(*ARGS, namespace, PLURAL, "x" * 63)


def test_kubectl_apply_tells_the_user_which_field_and_why(cluster, namespace, crd, tmp_path):
    from localcluster import config

    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump(job("y" * 70)))
    run = subprocess.run(
        [
            str(config.binary("kubectl")),
            "--kubeconfig",
            str(cluster.kubeconfig),
            "apply",
            "-n",
            namespace,
            "-f",
            str(manifest),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert "metadata.name: at most 63 characters" in run.stderr, run.stderr


def test_a_pod_the_api_refuses_is_the_job_s_condition_and_event_retried_with_backoff(
    cluster, namespace, operator
):
    core, custom = cluster.core(), client.CustomObjectsApi(cluster.api)
    restricted(core, namespace)
    custom.create_namespaced_custom_object(*ARGS, namespace, PLURAL, job("locked"))
    cond = wait_for(
        lambda: condition(custom, namespace, "locked", "PodRefused"),
        "the PodRefused condition",
        timeout=60,
    )
    assert "pod locked-1 refused by the API (403 Forbidden)" in cond["message"], cond
    assert "violates PodSecurity" in cond["message"], cond
    assert (
        f"fix: make spec.template meet the Pod Security level of namespace {namespace}"
        in (cond["message"])
    )
    # the Event follows the status patch in the same pass: wait for it
    warnings = wait_for(lambda: [m for r, m in events_of(core, namespace, "locked")
                                 if r == "PodRefused"], "the PodRefused Event", timeout=30)
    assert "violates PodSecurity" in warnings[0]
    assert read_pod(core, namespace, "locked-1") is None

    # Backoff (5 s, 10 s, 20 s ...), not the 2 s of an API error: the operator asked the API
    # exactly as often as the status counts, told each try once, and waits longer each time.
    def tries(n: int) -> dict[str, Any] | None:
        status = status_of(custom, namespace, "locked")
        return status if (status.get("podRefusals") or 0) >= n else None

    status = wait_for(lambda: tries(3), "a third try", timeout=60)
    count = status["podRefusals"]
    asked = operator.log().count("locked: 403 Forbidden")
    assert count <= asked <= count + 1, operator.log()[-3000:]
    # Each try's Event follows its status patch: wait until the read status's tries are told.
    def told() -> list[str] | None:
        found = [m for r, m in events_of(core, namespace, "locked") if r == "PodRefused"]
        return found if len(found) >= count else None

    refusals = wait_for(told, f"{count} PodRefused Events", timeout=30)
    assert len(refusals) <= count + 1, refusals
    last = next(c for c in status["conditions"] if c["type"] == "PodRefused")["message"]
    assert f"Try {count}; the next in {5 * 2 ** (count - 1)} s" in last, last

    # The namespace allows it now and the spec changes: tried at once, the condition clears.
    core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}}
    )
    custom.patch_namespaced_custom_object(
        *ARGS, namespace, PLURAL, "locked", {"spec": {"backoffLimit": 4}}
    )
    wait_for(lambda: read_pod(core, namespace, "locked-1"), "locked-1 once allowed", timeout=30)
    wait_for(
        lambda: condition(custom, namespace, "locked", "PodRefused") is None,
        "the condition to clear",
        timeout=30,
    )
    conds = status_of(custom, namespace, "locked")["conditions"]
    assert [c["reason"] for c in conds if c["type"] == "PodRefused"] == ["PodCreated"], conds


def test_a_second_job_on_an_overlapping_prefix_gets_no_pod_until_the_first_is_gone(
    cluster, namespace, operator, s3, s3_bucket
):
    first = job("first", f"s3://{s3_bucket}/team", s3.endpoint_url, 18941)
    second = job("second", f"s3://{s3_bucket}/team/second", s3.endpoint_url, 18942)
    beside = job("beside", f"s3://{s3_bucket}/teammate", s3.endpoint_url, 18943)  # not overlapping
    core, custom = submit(cluster, namespace, s3, first)
    wait_for(lambda: read_pod(core, namespace, "first-1"), "first-1", timeout=60)
    for body in (second, beside):
        custom.create_namespaced_custom_object(*ARGS, namespace, PLURAL, body)
    cond = wait_for(
        lambda: condition(custom, namespace, "second", "StorageConflict"),
        "the StorageConflict condition",
        timeout=60,
    )
    assert f"overlaps s3://{s3_bucket}/team of job {namespace}/first" in cond["message"], cond
    assert "give this job a prefix of its own" in cond["message"], cond
    # the Event follows the status patch in the same pass: wait for it, then it is one
    events = wait_for(lambda: [e for e in events_of(core, namespace, "second")
                               if e[0] == "StorageOverlap"], "the StorageOverlap Event", timeout=30)
    assert len(events) == 1, events
    wait_for(lambda: read_pod(core, namespace, "beside-1"), "beside-1", timeout=60)
    assert read_pod(core, namespace, "second-1") is None
    assert not condition(custom, namespace, "first", "StorageConflict")

    custom.delete_namespaced_custom_object(*ARGS, namespace, PLURAL, "first")
    wait_for(lambda: gone(custom, namespace, "first"), "the first job to go", timeout=60)
    wait_for(
        lambda: read_pod(core, namespace, "second-1"),
        "second-1 once the storage is free",
        timeout=90,
    )
    wait_for(
        lambda: condition(custom, namespace, "second", "StorageConflict") is None,
        "the condition to clear",
        timeout=30,
    )
    conds = status_of(custom, namespace, "second")["conditions"]
    assert [c["reason"] for c in conds if c["type"] == "StorageConflict"] == ["StorageFree"]


def test_a_deleted_job_whose_cleanup_pod_is_refused_goes_saying_its_checkpoints_stay(
    cluster, namespace, operator
):
    core, custom = cluster.core(), client.CustomObjectsApi(cluster.api)
    restricted(core, namespace)
    custom.create_namespaced_custom_object(
        *ARGS, namespace, PLURAL, job("purged", ckpt={"deleteOnJobDeletion": True})
    )

    def guarded() -> bool:
        meta = custom.get_namespaced_custom_object(*ARGS, namespace, PLURAL, "purged")["metadata"]
        return "spotrun.dev/checkpoint-cleanup" in (meta.get("finalizers") or [])

    wait_for(guarded, "the cleanup finalizer", timeout=60)
    with allowing(404):
        custom.delete_namespaced_custom_object(*ARGS, namespace, PLURAL, "purged")
    wait_for(
        lambda: gone(custom, namespace, "purged"),
        "the job to go, not stuck Terminating",
        timeout=90,
    )
    events = events_of(core, namespace, "purged")
    cleanup_refused = [m for r, m in events if r == "PodRefused" and "purged-cleanup-" in m]
    assert len(cleanup_refused) == 2, events  # tries 1 and 2; the 3rd lets the job go
    (abandoned,) = [m for r, m in events if r == "CheckpointCleanupAbandoned"]
    assert "the checkpoints under s3://checkpoints/refusals were NOT deleted" in abandoned
    assert "violates PodSecurity" in abandoned and "(3 tries)" in abandoned, abandoned
