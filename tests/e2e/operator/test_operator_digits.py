"""The digits example as a ResumableTrainingJob, preempted twice, ends bit-identical."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from e2e_support import IMAGE, read_pod, wait_for
from kubernetes import client

from spotrun import catalog, layout
from spotrun.localstore import LocalStore
from spotrun.s3store import S3Store

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[3]
EPOCHS = 40  # 1800 steps: long enough to be preempted twice mid-training
ARGS = ("spotrun.dev", "v1alpha1")
PLURAL = "resumabletrainingjobs"


def digits_job(name: str, bucket: str, endpoint: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "spotrun.dev/v1alpha1",
        "kind": "ResumableTrainingJob",
        "metadata": {"name": name},
        "spec": {
            "template": {"spec": {"containers": [{
                "name": "trainer", "image": IMAGE,
                "command": ["python", "examples/digits/train.py", "--epochs", str(EPOCHS)],
            }]}},
            "checkpoint": {"storage": {"uri": f"s3://{bucket}/{name}", "endpoint": endpoint,
                                       "secretRef": {"name": "s3-credentials"}}},
            "gpu": {"count": 1, "fallback": "cpu"},
            "terminationGracePeriodSeconds": 30,
            **spec,
        },
    }


def s3_secret(core: client.CoreV1Api, namespace: str, s3: Any) -> None:
    core.create_namespaced_secret(namespace, {
        "metadata": {"name": "s3-credentials"},
        "stringData": {"AWS_ACCESS_KEY_ID": s3.access_key_id,
                       "AWS_SECRET_ACCESS_KEY": s3.secret_access_key},
    })


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


def events_of(core: client.CoreV1Api, namespace: str, name: str) -> list[tuple[str, str]]:
    items = core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}").items
    items.sort(key=lambda e: e.metadata.creation_timestamp)
    return [(e.reason, e.message) for e in items]


def running_on(core: client.CoreV1Api, namespace: str, pod: str) -> str | None:
    p = read_pod(core, namespace, pod)
    if p is None or p.status.phase != "Running" or p.metadata.deletion_timestamp:
        return None
    return str(p.spec.node_name)


def reference_run(workdir: Path) -> subprocess.Popen[bytes]:
    """The same training, uninterrupted, as a plain local process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTRUN_", "AWS_"))}
    env["SPOTRUN_CHECKPOINT_DIR"] = str(workdir)
    return subprocess.Popen(
        [sys.executable, "examples/digits/train.py", "--epochs", str(EPOCHS)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_digits_survives_two_preemptions_bit_identical(
    cluster, namespace, operator, process_node, s3, s3_bucket, tmp_path, monkeypatch
):
    core, custom = cluster.core(), client.CustomObjectsApi(cluster.api)
    s3_secret(core, namespace, s3)
    custom.create_namespaced_custom_object(
        *ARGS, namespace, PLURAL, digits_job("digits", s3_bucket, s3.endpoint_url))
    reference = reference_run(tmp_path / "reference")

    restored_from = 0
    for attempt in (1, 2):
        pod = f"digits-{attempt}"
        node = wait_for(lambda pod=pod: running_on(core, namespace, pod),
                        f"{pod} to run", timeout=120)
        assert core.read_node(node).metadata.labels["karpenter.sh/capacity-type"] == "spot"
        wait_for(lambda since=restored_from: [s for s in steps_in_s3(s3, s3_bucket, "digits")
                                              if s >= since + 100],
                 f"{pod} to train 100 steps past step {restored_from}", timeout=120)
        process_node.preempt(node)
        process_node.add_node("spot")  # the cloud brings capacity back
        job = wait_for(lambda n=attempt: (j := get_job(custom, namespace, "digits"))
                       .get("status", {}).get("preemptions", 0) >= n and j,
                       f"preemption {attempt} to be recorded", timeout=90)
        restored_from = job["status"]["lastCheckpoint"]["step"]
        assert job["status"]["lastCheckpoint"]["finalSaved"] is True

    done = wait_for(lambda: get_job(custom, namespace, "digits").get("status", {})
                    .get("phase") in ("Succeeded", "Failed")
                    and get_job(custom, namespace, "digits"), "the job to finish", timeout=180)
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert (status["preemptions"], status["failures"], status["attempt"]) == (2, 0, 3)
    final = EPOCHS * 45
    assert status["lastCheckpoint"]["step"] == final

    events = events_of(core, namespace, "digits")
    preempted = [m for r, m in events if r == "Preempted"]
    restoring = [m for r, m in events if r == "Restoring"]
    assert len(preempted) == 2 and all("last checkpoint step" in m for m in preempted), events
    assert len(restoring) == 2 and all("restores from step" in m for m in restoring), events

    assert reference.wait(timeout=300) == 0
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    remote = S3Store.from_uri(f"s3://{s3_bucket}/digits", s3.endpoint_url)
    name = layout.step_dirname(final)
    assert catalog.fingerprint(remote, name) == catalog.fingerprint(
        LocalStore(str(tmp_path / "reference")), name)
